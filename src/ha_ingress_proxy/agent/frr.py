"""FRR as this node sees it (mode bgp): BGP sessions, BFD peers and the VIPs advertised to each peer, from vtysh's JSON.

One vtysh run asks every question at once (`-c` per command; vtysh prints one
JSON document per command, in order). What counts as *announced* is what bgpd
says it has sent: `show bgp ipv4 unicast neighbors <peer> advertised-routes
json`, per configured peer, counted only while that session is Established
(a route "advertised" to a peer that is down reaches no router). The gate adds
and removes the `network` lines; this module only reads.

vtysh is an argv prefix (`vtysh -N hip` on a node; the lab passes its own
pathspace per namespace). When no FRR daemon answers, vtysh exits non-zero:
observe() then returns an Frr with running=False and the reason, it never raises.
The parsers take the decoded JSON, so tests feed them output captured from FRR
8.4.4 (tests/agent/data/frr).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from ha_ingress_proxy.errors import CommandError, UserError
from ha_ingress_proxy.subproc import run

VTYSH_TIMEOUT = 5.0
ESTABLISHED = "Established"


def vtysh_argv(pathspace: str) -> list[str]:
    """The node's vtysh: FRR runs in its own pathspace (`frrinit.sh start hip`)."""
    return ["vtysh", "-N", pathspace]


def commands(peers: Sequence[str]) -> list[str]:
    """What observe() asks, in the order parse() reads the answers."""
    return ["show bgp summary json", "show bfd peers json",
            *[f"show bgp ipv4 unicast neighbors {p} advertised-routes json" for p in peers]]


def documents(text: str) -> list[Any]:
    """Every JSON document in vtysh's output, in order; lines that are not JSON (vtysh's warnings such as
    "% Can't open configuration file ...vtysh.conf") are skipped."""
    decoder, docs, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i] in "{[" and (i == 0 or text[i - 1] == "\n"):
            doc, i = decoder.raw_decode(text, i)
            docs.append(doc)
        else:
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl + 1
    return docs


def query(vtysh: Sequence[str], asked: Sequence[str], timeout: float = VTYSH_TIMEOUT) -> list[Any]:
    """One vtysh run, one JSON document per command. UserError (one line) when vtysh fails or answers short."""
    argv = [*vtysh]
    for c in asked:
        argv += ["-c", c]
    try:
        out = run(argv, timeout=timeout).stdout or ""
    except CommandError as exc:
        said = " ".join(line.strip() for line in exc.output.splitlines() if line.strip() and not line.startswith("% Can't open"))
        raise UserError(f"FRR not answering ({' '.join(vtysh)}: exit {exc.returncode}{': ' + said if said else ''})") from None
    try:
        docs = documents(out)
    except ValueError as exc:
        raise UserError(f"FRR: {' '.join(vtysh)} printed something that is not JSON ({exc})") from None
    if len(docs) != len(asked):
        raise UserError(f"FRR: {' '.join(vtysh)} answered {len(docs)} of {len(asked)} questions")
    return docs


@dataclass
class Peer:
    address: str
    bgp: Optional[str]  # the session's state (Established, Active, Connect, Idle, ...); None if bgpd does not know it
    bfd: Optional[str]  # up, down, init, ...; None when there is no BFD session for it
    advertised: tuple[str, ...] = ()  # prefixes (a.b.c.d/32) bgpd has sent it

    @property
    def established(self) -> bool:
        return self.bgp == ESTABLISHED


@dataclass
class Frr:
    running: bool
    error: str = ""  # why running is False
    peers: list[Peer] = field(default_factory=list)

    def announced(self, vips: Sequence[str]) -> list[str]:
        """The VIPs (as given, a.b.c.d/32) advertised to at least one Established peer: what routers can use now."""
        sent = {p for peer in self.peers if peer.established for p in peer.advertised}
        return [v for v in vips if v in sent]

    def advertising(self, vips: Sequence[str]) -> dict[str, list[str]]:
        """peer -> the VIPs still advertised to it (every peer, established or not; empty lists left out)."""
        out = {p.address: [v for v in vips if v in p.advertised] for p in self.peers}
        return {k: v for k, v in out.items() if v}

    def to_dict(self) -> dict[str, Any]:
        return {"running": self.running, **({"error": self.error} if self.error else {}),
                "peers": [{"address": p.address, "bgp": p.bgp, "bfd": p.bfd, "advertised": list(p.advertised)}
                          for p in self.peers]}


def parse(peers: Sequence[str], docs: Sequence[Any]) -> Frr:
    """An Frr from the documents commands(peers) produced."""
    summary, bfd, *adverts = docs
    sessions = ((summary or {}).get("ipv4Unicast") or {}).get("peers") or {} if isinstance(summary, dict) else {}
    bfd_state = {str(b.get("peer")): b.get("status") for b in bfd if isinstance(b, dict)} if isinstance(bfd, list) else {}
    out = Frr(running=True)
    for address, advert in zip(peers, adverts):
        session = sessions.get(address) or {}
        routes = (advert or {}).get("advertisedRoutes") or {} if isinstance(advert, dict) else {}
        out.peers.append(Peer(address, session.get("state"), bfd_state.get(address), tuple(sorted(routes))))
    return out


def observe(vtysh: Sequence[str], peers: Sequence[str], timeout: float = VTYSH_TIMEOUT) -> Frr:
    """Ask FRR now. Never raises: an FRR that does not answer is Frr(running=False, error=...)."""
    try:
        return parse(peers, query(vtysh, commands(peers), timeout))
    except UserError as exc:
        return Frr(running=False, error=exc.lines[0] if exc.lines else "FRR not answering")
