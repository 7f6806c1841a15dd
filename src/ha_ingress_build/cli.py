"""`ha-ingress-build`: the build side's command line (render, lint), for use outside invoke.

Never installed on a node: the packages ship only the node runtime and its
`ha-ingress-proxy` command. Exit codes as `ha-ingress-proxy` (cli.guarded).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ha_ingress_build import pipeline
from ha_ingress_proxy.cli import guarded

PROG = "ha-ingress-build"


def _render(args: argparse.Namespace) -> int:
    nodes = pipeline.render_site(args.inventory, args.out)
    print(f"rendered {len(nodes)} node(s) into {args.out / 'nodes'}: {', '.join(nodes)}")
    return 0


def _lint(args: argparse.Namespace) -> int:
    pipeline.lint_site(args.out, tuple(args.release))
    print(f"lint clean: {args.out / 'nodes'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render", help="render every node's files from an inventory")
    p.add_argument("--inventory", type=Path, required=True, help="inventory YAML")
    p.add_argument("--out", type=Path, default=Path("build"), help="output directory (default: build)")
    p.set_defaults(func=_render)
    p = sub.add_parser("lint", help="check rendered nodes with the real haproxy, keepalived, shellcheck, systemd-analyze")
    p.add_argument("--out", type=Path, default=Path("build"), help="directory holding nodes/ (default: build)")
    p.add_argument("--release", action="append", default=[], choices=["debian11", "debian13"],
                   help="also check on this Debian release (debootstrapped once)")
    p.set_defaults(func=_lint)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: args.func(args), prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
