"""`bgp-gate` (mode: bgp): announce this node's VIPs over BGP only while its haproxy answers.

Every `interval` the gate asks haproxy's stats socket (`show info`, a plain unix
socket connect; a dead haproxy refuses it at once). After `rise` answers in a row it
announces every VIP: one `network a.b.c.d/32` line per VIP in FRR's running config,
through vtysh. After `fall` misses, or while the node is drained (the drain file is
non-zero), it removes them: bgpd sends the withdraw at once (no MRAI in FRR's
datacenter defaults), so with the defaults (200 ms x 2) a dead haproxy is withdrawn
in about half a second. frr.conf holds no `network` lines, so a node whose gate is
not running announces nothing. While announced the gate re-asserts the lines every
few seconds (idempotent), which heals an FRR restart. On SIGTERM it withdraws first.

Before the loop it puts every VIP (/32) on the dummy interface hip0, so the /32 is a
connected route (FRR announces only what is in the RIB) and haproxy can bind it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ha_ingress_proxy.agent import haproxy_api
from ha_ingress_proxy.errors import CommandError, UserError
from ha_ingress_proxy.plan import BgpView
from ha_ingress_proxy.subproc import run

REASSERT_EVERY = 5.0  # seconds between idempotent re-announcements while healthy
VTYSH_TIMEOUT = 5.0


@dataclass
class Gate:
    """The gate's state machine, separate from its clock and its I/O so tests can drive it."""

    view: BgpView
    vtysh: Sequence[str]  # argv prefix, e.g. ["vtysh", "-N", "hip"]
    socket: Path
    drain_file: Optional[Path] = None
    log: Callable[[str], None] = print
    announced: bool = False
    ups: int = 0
    downs: int = 0
    last_assert: float = field(default=0.0)

    def healthy(self) -> bool:
        try:
            return "Pid:" in haproxy_api.command(self.socket, "show info", timeout=max(0.05, self.view.gate_interval_ms / 1000))
        except OSError:
            return False

    def drained(self) -> bool:
        if self.drain_file is None:
            return False
        try:
            return self.drain_file.read_text().strip() not in ("", "0")
        except OSError:
            return False

    def _network(self, add: bool) -> None:
        b = self.view
        argv = [*self.vtysh, "-c", "configure terminal", "-c", f"router bgp {b.asn}", "-c", "address-family ipv4 unicast"]
        for vip in b.vips:
            argv += ["-c", f"{'' if add else 'no '}network {vip}"]
        run(argv, timeout=VTYSH_TIMEOUT, context="bgp-gate: vtysh")

    def announce(self) -> None:
        self._network(True)
        self.announced, self.last_assert = True, time.monotonic()

    def withdraw(self) -> None:
        self._network(False)
        self.announced = False

    def tick(self) -> None:
        """One check and whatever it changes."""
        ok = self.healthy() and not self.drained()
        self.ups, self.downs = (self.ups + 1, 0) if ok else (0, self.downs + 1)
        if not self.announced and self.ups >= self.view.gate_rise:
            self.announce()
            self.log(f"bgp-gate: haproxy answered {self.ups} times: announcing {', '.join(self.view.vips)}")
        elif self.announced and self.downs >= self.view.gate_fall:
            self.withdraw()
            why = "node drained" if self.drained() else f"haproxy missed {self.downs} checks"
            self.log(f"bgp-gate: {why}: withdrew {', '.join(self.view.vips)}")
        elif self.announced and time.monotonic() - self.last_assert > REASSERT_EVERY:
            self.announce()

    def set_passwords(self, env: dict[str, str]) -> None:
        """TCP-MD5 passwords from secrets.env (the unit's EnvironmentFile): set in the running config, never on disk here."""
        b = self.view
        for peer in b.peers:
            if not peer.password_env:
                continue
            secret = env.get(peer.password_env)
            if not secret:
                raise UserError(f"bgp-gate: {peer.password_env} is not set in secrets.env (peer {peer.address} has password: true)")
            try:
                run([*self.vtysh, "-c", "configure terminal", "-c", f"router bgp {b.asn}",
                     "-c", f"neighbor {peer.address} password {secret}"], timeout=VTYSH_TIMEOUT)
            except CommandError as exc:  # its argv holds the secret: never shown
                raise UserError(f"bgp-gate: vtysh refused the password for peer {peer.address} (exit {exc.returncode})") from None


def ensure_vips(view: BgpView, ip: str = "ip") -> None:
    """The dummy interface with every VIP as a /32 (idempotent)."""
    dev = view.vip_interface
    if run([ip, "link", "show", dev], check=False).returncode != 0:
        run([ip, "link", "add", dev, "type", "dummy"], context="bgp-gate")
    run([ip, "link", "set", dev, "up"], context="bgp-gate")
    for vip in view.vips:
        run([ip, "addr", "replace", vip, "dev", dev], context="bgp-gate")


def loop(gate: Gate, stop: Callable[[], bool]) -> None:
    """Tick every interval until stop(); withdraw on the way out."""
    interval = gate.view.gate_interval_ms / 1000
    try:
        while not stop():
            started = time.monotonic()
            try:
                gate.tick()
            except CommandError as exc:  # FRR not up yet, or restarting: try again next tick
                gate.log(f"bgp-gate: {exc.lines[0] if hasattr(exc, 'lines') else exc}")
                gate.announced = False
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    finally:
        if gate.announced:
            try:
                gate.withdraw()
                gate.log("bgp-gate: stopping: withdrew every VIP")
            except CommandError:
                pass


def main(root: Path, vtysh: Sequence[str] | None = None, log: Callable[[str], None] = print) -> None:
    """The unit's ExecStart: this node's plan (from apply's state), VIPs on hip0, then the loop until SIGTERM."""
    from ha_ingress_proxy import layout
    from ha_ingress_proxy.agent import drain, state
    from ha_ingress_proxy.plan import plan

    applied = state.read(root)
    if applied is None or not applied.ok:
        raise UserError("bgp-gate: the agent has not applied a role on this node (ha-ingress-proxy status)")
    site = drain._site(root)
    node_plan = plan(site, applied.node)
    if node_plan.bgp is None:
        raise UserError(f"bgp-gate: site {site.site} is mode {site.mode}, not bgp")
    view = node_plan.bgp
    gate = Gate(view, list(vtysh or ["vtysh", "-N", view.pathspace]), root / layout.HAPROXY_SOCKET,
                root / layout.DRAIN_FILE, log)
    ensure_vips(view)
    gate.set_passwords(dict(os.environ))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    loop(gate, lambda: bool(stopping))
