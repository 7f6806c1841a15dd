"""`ha-ingress-proxy` command line: build-side render/lint, node-side agent commands.

Exit codes: 0 ok, 1 user error (bad input, missing tool, failed check),
130 interrupted, 3 internal bug (traceback written to a file, path printed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import UserError


def guarded(fn: Callable[[], int | None], prog: str = "ha-ingress-proxy") -> int:
    """Run fn, turning every failure into a message and an exit code (never a traceback)."""
    try:
        return fn() or 0
    except UserError as exc:
        for line in exc.lines:
            print(f"{prog}: {line}" if not line.startswith(" ") else line, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - the last line of defence
        with tempfile.NamedTemporaryFile("w", prefix="ha-ingress-proxy-crash-", suffix=".log", delete=False) as fh:
            traceback.print_exc(file=fh)
        print(f"{prog}: internal error (a bug; details in {fh.name})", file=sys.stderr)
        return 3


def _render(args: argparse.Namespace) -> int:
    from . import jobs

    nodes = jobs.render_site(args.inventory, args.out)
    print(f"rendered {len(nodes)} node(s) into {args.out / 'nodes'}: {', '.join(nodes)}")
    return 0


def _lint(args: argparse.Namespace) -> int:
    from . import jobs

    jobs.lint_site(args.out, tuple(args.release))
    print(f"lint clean: {args.out / 'nodes'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ha-ingress-proxy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render", help="render every node's files from an inventory")
    p.add_argument("--inventory", type=Path, required=True, help="inventory YAML")
    p.add_argument("--out", type=Path, default=Path("build"), help="output directory (default: build)")
    p.set_defaults(func=_render)
    p = sub.add_parser("lint", help="check rendered nodes with the real haproxy, keepalived, shellcheck, systemd-analyze")
    p.add_argument("--out", type=Path, default=Path("build"), help="directory holding nodes/ (default: build)")
    p.add_argument("--release", action="append", default=[], choices=["debian11", "debian13"], help="also check on this Debian release (debootstrapped once)")
    p.set_defaults(func=_lint)
    try:
        from .agent import cli as agent_cli  # the node agent's subcommands, when present
    except ImportError:
        agent_cli = None
    if agent_cli is not None:
        agent_cli.add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
