"""The node agent's subcommands of `ha-ingress-proxy`: apply, status, drain, resume, reload, save-server-state, metrics and watch-haproxy.

Both take --root PATH (default /): every input is read and every output
written below it. --ip-addr-json FILE reads the host's addresses from a saved
`ip -j -4 addr` output instead of running ip (tests, image builds); without
it the agent asks `ip`, in whatever network namespace it runs in.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ha_ingress_proxy.errors import UserError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, default=Path("/"), help="read and write everything below this directory (default: /)")
    p.add_argument(
        "--ip-addr-json",
        type=Path,
        default=None,
        metavar="FILE",
        help="this host's addresses as `ip -j -4 addr` output, instead of running ip",
    )


def _vtysh(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vtysh", default=None, metavar="ARGV",
                   help="mode bgp: the vtysh command, space-separated (default: vtysh -N hip)")


def _apply(args: argparse.Namespace) -> int:
    from .apply import apply

    outcome = apply(args.root, ip_json=args.ip_addr_json)
    for path, what in outcome.changes:
        print(f"{path}: {what}")
    for warning in outcome.warnings:
        print(f"ha-ingress-proxy: warning: {warning}", file=sys.stderr)
    state = outcome.state
    if not outcome.ok:
        # one line, for the journal; the state file has the same reason
        raise UserError(f"refused: {state.reason}")
    role = f" ({state.role})" if state.role else ""
    verb = "unchanged" if all(what == "unchanged" for _, what in outcome.changes) else "applied"
    print(
        f"{verb}: node {state.node}{role} of site {state.site}, from {state.where}; "
        f"VIPs {', '.join(state.vips)}; masters {', '.join(state.masters) or 'none'}"
    )
    for line in state.overrides:
        print(f"override: {line}")
    # A running daemon whose config changed gets a validated reload, never a restart.
    from ha_ingress_proxy import layout

    from . import reload

    written = {layout.shown(rel): rel for rel in layout.ROLE_FILES}
    changed = {written[path] for path, what in outcome.changes if what == "written" and path in written}
    for line in reload.reload_changed(args.root, changed):
        print(line)
    return 0


def _bgp_gate(args: argparse.Namespace) -> int:
    from . import bgp_gate

    bgp_gate.main(args.root, vtysh=args.vtysh.split() if args.vtysh else None)
    return 0


def _watch_haproxy(args: argparse.Namespace) -> int:
    from . import haproxy_watch

    return haproxy_watch.main(args.root)


def _status(args: argparse.Namespace) -> int:
    from . import status

    report = status.collect(args.root, ip_json=args.ip_addr_json, vtysh=args.vtysh.split() if args.vtysh else None)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(status.human(report))
    return status.exit_code(report)


def _drain(args: argparse.Namespace) -> int:
    from . import drain

    if args.wait is None:
        args.wait = drain.DEFAULT_WAIT
    if args.wait < 0:
        raise UserError(f"--wait: {args.wait:g} is negative")
    drain.drain(args.root, wait=args.wait, force=args.force, ip_json=args.ip_addr_json, log=print,
                vtysh=args.vtysh.split() if args.vtysh else None)
    return 0


def _resume(args: argparse.Namespace) -> int:
    from . import drain

    drain.resume(args.root, log=print, vtysh=args.vtysh.split() if args.vtysh else None)
    return 0


def _reload(args: argparse.Namespace) -> int:
    from . import reload

    if not args.keepalived_only:
        print(reload.reload_haproxy(args.root))
    if not args.haproxy_only:
        print(reload.reload_keepalived(args.root))
    return 0


def _save_server_state(args: argparse.Namespace) -> int:
    from ha_ingress_proxy import layout

    from . import reload

    n = reload.save_server_state(args.root)
    print(f"{layout.shown(layout.SERVER_STATE)}: {n} servers' state saved")
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from . import metrics

    vtysh = args.vtysh.split() if args.vtysh else None
    if args.once:
        sys.stdout.write(metrics.scrape(args.root, ip_json=args.ip_addr_json, vtysh=vtysh))
        return 0
    return metrics.serve(args.listen, args.root, ip_json=args.ip_addr_json, tls_cert=args.tls_cert, vtysh=vtysh)


def add_subcommands(subparsers) -> None:
    """Add `apply`, `status`, `drain` and `resume` to the ha-ingress-proxy parser (called by ha_ingress_proxy.cli)."""
    p = subparsers.add_parser("apply", help="node agent: pick this node's role from metadata and write its configs (or refuse)")
    _common(p)
    p.set_defaults(func=_apply)
    p = subparsers.add_parser("status", help="node agent: role, where it came from, VIPs held, VRRP state, haproxy backends")
    _common(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _vtysh(p)
    p.set_defaults(func=_status)
    p = subparsers.add_parser(
        "drain", help="maintenance: close keep-alive clients, let streams finish, give up every VIP or withdraw it (bgp); kept across reboot")
    _common(p)
    p.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                   help="wait at most this long for open streams to finish before the VIPs move (default: 10)")
    p.add_argument("--force", action="store_true", help="drain even when no other node looks healthy")
    _vtysh(p)
    p.set_defaults(func=_drain)
    p = subparsers.add_parser(
        "bgp-gate", help="mode bgp: VIPs on hip0; announce them (vtysh) only while haproxy answers; runs until SIGTERM")
    _common(p)
    _vtysh(p)
    p.set_defaults(func=_bgp_gate)
    p = subparsers.add_parser(
        "watch-haproxy", help="hold a pidfd on haproxy's master; its exit puts keepalived in FAULT at once "
        "(a track_file); runs until SIGTERM")
    p.add_argument("--root", type=Path, default=Path("/"), help="read and write everything below this directory (default: /)")
    p.set_defaults(func=_watch_haproxy)
    p = subparsers.add_parser("resume", help="undo drain: keepalived leaves FAULT (bgp: announce again), haproxy's drain flag cleared")
    _common(p)
    _vtysh(p)
    p.set_defaults(func=_resume)
    p = subparsers.add_parser(
        "reload", help="hitless reload: haproxy -c, save server state, SIGUSR2 to haproxy's master; SIGHUP to keepalived")
    _common(p)
    only = p.add_mutually_exclusive_group()
    only.add_argument("--haproxy-only", action="store_true", help="reload haproxy only")
    only.add_argument("--keepalived-only", action="store_true", help="reload keepalived only")
    p.set_defaults(func=_reload)
    p = subparsers.add_parser(
        "save-server-state", help="write haproxy's `show servers state` to its server-state-file (the haproxy unit's ExecReload=)")
    _common(p)
    p.set_defaults(func=_save_server_state)
    p = subparsers.add_parser("metrics", help="serve VRRP and node metrics for Prometheus (same facts as status, read at each scrape)")
    _common(p)
    p.add_argument("--listen", default="127.0.0.1:9165", metavar="ADDRESS:PORT", help="where to serve /metrics (default: 127.0.0.1:9165)")
    p.add_argument("--tls-cert", default=None, metavar="PEM",
                   help="serve over TLS with this key+certificate file (the stats page's; node path, below --root)")
    p.add_argument("--once", action="store_true", help="print one scrape to stdout and exit")
    _vtysh(p)
    p.set_defaults(func=_metrics)
