"""A stand-in for vtysh in the agent's unit tests: replays vtysh output captured from FRR 8.4.4 in the BGP lab.

No FRR runs at a --root tree, so this prints what the real vtysh printed there (tests/agent/data/frr-8.4.4,
captured by ha_ingress_lab.bgp_lab.capture_frr) and exits with its exit code. It refuses (exit 2) any other
list of commands than the one captured, so a change in what the agent asks fails the tests instead of
silently replaying stale answers. The real FRR path is tests/lab/test_bgp_lab.py.

    fake_vtysh.py STATE -c CMD ...          STATE: announced | withdrawn | frr-down
    fake_vtysh.py auto:DRAINFILE -c CMD ... withdrawn while DRAINFILE holds a non-zero number (what the
                                            bgp-gate does with it in the lab), else announced
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "frr-8.4.4"


def main(argv: list[str]) -> int:
    state, rest = argv[0], argv[1:]
    asked = [rest[i + 1] for i in range(0, len(rest), 2) if rest[i] == "-c"]
    captured = json.loads((DATA / "commands.json").read_text())["commands"]
    if asked != captured:
        print(f"fake vtysh: asked {asked}, captured only {captured}")
        return 2
    if state.startswith("auto:"):
        try:
            text = Path(state[5:]).read_text().strip()
        except OSError:
            text = ""
        state = "withdrawn" if text not in ("", "0") else "announced"
    sys.stdout.write((DATA / f"{state}.out").read_text())
    return int((DATA / f"{state}.rc").read_text())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
