"""`ha-ingress-proxy`: the node command (apply, status, drain, resume, reload, metrics, watch-haproxy); build-side verbs live in `ha-ingress-build` and invoke.

Exit codes: 0 ok, 1 user error (bad input, missing tool, failed check),
130 interrupted, 3 internal bug (traceback written to a file, path printed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence

from ha_ingress_proxy.agent import cli as agent_cli
from ha_ingress_proxy.errors import UserError


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ha-ingress-proxy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    agent_cli.add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
