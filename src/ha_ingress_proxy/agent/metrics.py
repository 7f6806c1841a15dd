"""`ha-ingress-proxy metrics`: VRRP and node metrics for Prometheus, computed at scrape time.

Every scrape calls live.observe() (the same function `status` reads), so a
scrape and `status` can never disagree, and nothing can be stale: a killed
keepalived shows `ha_ingress_keepalived_up 0` and `vrrp_state{state="down"}`
on the very next scrape. A dead node is seen by Prometheus itself (`up == 0`).

Metrics (text exposition format 0.0.4; stdlib HTTP server, no client library):

  ha_ingress_agent_applied                 1 when the agent applied a role this boot
  ha_ingress_agent_info{site,node,role,source,mode,result}   always 1
  ha_ingress_keepalived_up                 keepalived (and its VRRP child) alive
  ha_ingress_haproxy_up                    haproxy's master alive (keepalived's check rule)
  ha_ingress_drained                       `ha-ingress-proxy drain` holds every instance in FAULT
  ha_ingress_haproxy_down_tracked          watch-haproxy's file says haproxy's master is gone: keepalived
                                           holds every instance in FAULT (absent file: 0, as keepalived reads it)
  ha_ingress_vip_held{site,vip,vrrp_instance}          the VIP is on this host's interface
  ha_ingress_vrrp_state{site,vip,vrrp_instance,state}  1 for the current state of master|backup|fault|down
  ha_ingress_vip_planned_master{site,vip,vrrp_instance} this node masters it when all are healthy
  ha_ingress_observe_error{what}           1 when a fact could not be read (vip series then omitted)

Mode bgp has no keepalived and no VRRP: every node holds every VIP, so the
VRRP series (keepalived_up, vip_held, vrrp_state, vip_planned_master) are left
out (they would page KeepalivedDown and VipDualMaster on a healthy site), and
FRR's view is exported instead (frr.py, through vtysh, as `status` reads it):

  ha_ingress_frr_up                        FRR answered vtysh at this scrape
  ha_ingress_bgp_peer_up{site,peer}        the BGP session with the router is Established
  ha_ingress_bfd_peer_up{site,peer}        its BFD session is up (no series when there is none)
  ha_ingress_bgp_vip_announced{site,vip}   this node announces the VIP to at least one Established peer

When this host's addresses cannot be read, vip_held and vrrp_state are left
out rather than guessed (a guessed 0 would page VipNoMaster).
"""

from __future__ import annotations

import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from collections.abc import Sequence
from typing import Optional

from ha_ingress_proxy import inventory
from ha_ingress_proxy.errors import UserError

from . import live

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_LISTEN = "127.0.0.1:9165"

HELP = {
    "ha_ingress_agent_applied": ("gauge", "1 when the node agent applied a role since boot, 0 when it refused or has not run"),
    "ha_ingress_agent_info": ("gauge", "The role the agent applied and where it came from (always 1)"),
    "ha_ingress_keepalived_up": ("gauge", "1 when keepalived (and its VRRP child) runs, read at scrape time"),
    "ha_ingress_haproxy_up": ("gauge", "1 when haproxy's master process runs, read at scrape time"),
    "ha_ingress_drained": ("gauge", "1 while the node is drained (ha-ingress-proxy drain): every VRRP instance held in FAULT"),
    "ha_ingress_haproxy_down_tracked": ("gauge", "1 while watch-haproxy's track_file says haproxy's master is gone "
                                        "(keepalived holds every VRRP instance in FAULT)"),
    "ha_ingress_vip_held": ("gauge", "1 when the VIP is on this node's interface now"),
    "ha_ingress_vrrp_state": ("gauge", "VRRP state of this node for the VIP: 1 for the current state"),
    "ha_ingress_vip_planned_master": ("gauge", "1 when this node masters the VIP while every node is healthy"),
    "ha_ingress_observe_error": ("gauge", "1 when a fact could not be read at this scrape"),
    "ha_ingress_frr_up": ("gauge", "mode bgp: 1 when FRR answered vtysh at this scrape"),
    "ha_ingress_bgp_peer_up": ("gauge", "mode bgp: 1 when the BGP session with this router is Established"),
    "ha_ingress_bfd_peer_up": ("gauge", "mode bgp: 1 when the BFD session with this router is up"),
    "ha_ingress_bgp_vip_announced": ("gauge", "mode bgp: 1 when this node announces the VIP to at least one Established router"),
}
VRRP_ONLY = ("ha_ingress_keepalived_up", "ha_ingress_haproxy_down_tracked", "ha_ingress_vip_held", "ha_ingress_vrrp_state", "ha_ingress_vip_planned_master")
BGP_ONLY = ("ha_ingress_frr_up", "ha_ingress_bgp_peer_up", "ha_ingress_bfd_peer_up", "ha_ingress_bgp_vip_announced")


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, object]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def exposition(obs: live.Observation, bgp: Optional[dict] = None) -> str:
    """The Prometheus text for one observation; bgp: mode bgp's status.bgp_report (then no VRRP series)."""
    skip = VRRP_ONLY if bgp is not None else BGP_ONLY
    samples: dict[str, list[tuple[dict[str, object], int]]] = {name: [] for name in HELP if name not in skip}
    st = obs.state
    site = (st.site if st else "") or ""
    samples["ha_ingress_agent_applied"].append(({}, int(obs.applied)))
    samples["ha_ingress_agent_info"].append(({
        "site": site, "node": (st.node if st else "") or "", "role": (st.role if st else "") or "",
        "source": (st.source if st else "") or "", "mode": (st.mode if st else "") or "",
        "result": st.result if st else ("unreadable" if obs.state_error else "not applied"),
    }, 1))
    samples["ha_ingress_haproxy_up"].append(({}, int(obs.haproxy_up)))
    samples["ha_ingress_drained"].append(({}, int(obs.drained)))
    if bgp is not None:
        _bgp_samples(samples, site, obs, bgp)
    else:
        _vrrp_samples(samples, site, obs)
    samples["ha_ingress_observe_error"].append(({"what": "addresses"}, int(obs.addresses is None)))
    samples["ha_ingress_observe_error"].append(({"what": "state_file"}, int(obs.state is None)))
    if bgp is not None:
        samples["ha_ingress_observe_error"].append(({"what": "frr"}, int("error" in bgp)))
    lines = []
    for name, rows in samples.items():
        kind, text = HELP[name]
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{_labels(labels)} {value}" for labels, value in rows)
    return "\n".join(lines) + "\n"


def _vrrp_samples(samples: dict, site: str, obs: live.Observation) -> None:
    samples["ha_ingress_keepalived_up"].append(({}, int(obs.keepalived_up)))
    samples["ha_ingress_haproxy_down_tracked"].append(({}, int(bool(obs.haproxy_down))))
    for v in obs.vips:
        base = {"site": site, "vip": v.address, "vrrp_instance": v.instance}
        samples["ha_ingress_vip_planned_master"].append((base, int(v.planned_master)))
        if v.held is not None:
            samples["ha_ingress_vip_held"].append((base, int(v.held)))
        if v.state is not None:
            for s in live.STATES:
                samples["ha_ingress_vrrp_state"].append(({**base, "state": s}, int(v.state == s)))


def _bgp_samples(samples: dict, site: str, obs: live.Observation, bgp: dict) -> None:
    """FRR's facts; a dead FRR announces nothing, so every VIP reads 0 then (not left out: that is the page)."""
    if "error" in bgp:  # the site model could not be read: nothing known about FRR
        return
    f = bgp.get("frr") or {}
    samples["ha_ingress_frr_up"].append(({}, int(bool(f.get("running")))))
    for peer in f.get("peers") or []:
        labels = {"site": site, "peer": peer["address"]}
        samples["ha_ingress_bgp_peer_up"].append((labels, int(peer.get("bgp") == "Established")))
        if peer.get("bfd") is not None:
            samples["ha_ingress_bfd_peer_up"].append((labels, int(peer.get("bfd") == "up")))
    announced = set(bgp.get("announced") or [])
    for vip in obs.state.vips if obs.state is not None and obs.applied else []:
        samples["ha_ingress_bgp_vip_announced"].append(({"site": site, "vip": vip}, int(vip in announced)))


def bgp_facts(root: Path, obs: live.Observation, vtysh: Optional[Sequence[str]] = None) -> Optional[dict]:
    """Mode bgp: status.bgp_report for this scrape (FRR through vtysh); None in the VRRP modes or before apply."""
    if obs.state is None or not obs.applied or obs.state.mode != inventory.Mode.BGP.value:
        return None
    from .apply import load_site
    from .status import bgp_report

    try:
        return bgp_report(root, load_site(root), obs.state.node, vtysh)
    except UserError as exc:
        return {"error": " ".join(exc.lines)}


def scrape(root: Path = Path("/"), ip_json: Optional[Path] = None, vtysh: Optional[Sequence[str]] = None) -> str:
    obs = live.observe(root, ip_json=ip_json)
    return exposition(obs, bgp_facts(Path(root), obs, vtysh))


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UserError(f"--listen: {text!r} is not ADDRESS:PORT")
    return host.strip("[]"), int(port)


HANDSHAKE_TIMEOUT = 10.0  # seconds a client may take to finish the TLS handshake


class _Handler(BaseHTTPRequestHandler):
    server_version = "ha-ingress-proxy-metrics"
    sys_version = ""
    root: Path = Path("/")
    ip_json: Optional[Path] = None
    vtysh: Optional[Sequence[str]] = None
    lock = threading.Lock()

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):  # the handshake in this client's thread, bounded
            self.request.settimeout(HANDSHAKE_TIMEOUT)
            self.request.do_handshake()
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            with self.lock:  # one observation at a time: scrapes never pile up subprocesses
                body = scrape(self.root, self.ip_json, self.vtysh).encode()
            self._send(200, body, CONTENT_TYPE)
        elif path == "/":
            self._send(200, b'<html><body><a href="/metrics">/metrics</a></body></html>\n', "text/html")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        pass  # a scrape every few seconds is not news for the journal


def resolve_host(host: str, root: Path) -> str:
    """`node` is this node's own address, as the agent found it at boot (the unit is the same on every node)."""
    if host != "node":
        return host
    state = live.observe(root, addresses=[]).state
    if state is None or not state.ok or not state.address:
        raise UserError("metrics: --listen node:PORT: the agent has not applied a role, so this node's address is "
                        "unknown (ha-ingress-proxy status says why)")
    return state.address


def tls_context(cert: str, root: Path) -> ssl.SSLContext:
    """A server context from the stats page's PEM (key and certificate in one root-only file)."""
    path = Path(root) / cert.lstrip("/")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(path))
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"metrics: --tls-cert {cert}: cannot load it ({getattr(exc, 'strerror', None) or exc}); "
                        "`ha-ingress-proxy apply` writes it (self-signed) when none is delivered") from None
    return ctx


def make_server(listen: str, root: Path = Path("/"), ip_json: Optional[Path] = None,
                tls_cert: Optional[str] = None, vtysh: Optional[Sequence[str]] = None) -> ThreadingHTTPServer:
    host, port = parse_listen(listen)
    host = resolve_host(host, Path(root))
    ctx = tls_context(tls_cert, Path(root)) if tls_cert else None
    handler = type("Handler", (_Handler,), {"root": Path(root), "ip_json": ip_json, "vtysh": vtysh})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise UserError(f"metrics: cannot listen on {listen}: {exc.strerror or exc}") from None
    if ctx is not None:
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    server.daemon_threads = True
    return server


def serve(listen: str, root: Path = Path("/"), ip_json: Optional[Path] = None, tls_cert: Optional[str] = None,
          vtysh: Optional[Sequence[str]] = None) -> int:
    server = make_server(listen, root, ip_json, tls_cert, vtysh)
    host, port = server.server_address[:2]
    scheme = "https" if tls_cert else "http"
    print(f"ha-ingress-proxy metrics: serving {scheme}://{host}:{port}/metrics", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


__all__ = ["exposition", "scrape", "serve", "make_server", "parse_listen", "DEFAULT_LISTEN"]
