"""Named, timed steps for long builds: print progress as each starts and ends, keep the times."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class StepTimer:
    """Collects (step name, seconds) pairs in the order the steps ran."""

    title: str
    times: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step; print '==> name' when it starts and '<== name: 12.3 s' when it ends."""
        print(f"==> {self.title}: {name}", file=sys.stderr, flush=True)
        start = time.monotonic()
        ok = False
        try:
            yield
            ok = True
        finally:
            took = time.monotonic() - start
            self.times.append((name if ok else f"{name} (FAILED)", took))
            print(f"<== {self.title}: {name}: {took:.1f} s{'' if ok else ' FAILED'}", file=sys.stderr, flush=True)

    def total(self) -> float:
        """Seconds spent in all recorded steps."""
        return sum(t for _, t in self.times)

    def summary(self) -> str:
        """A small table of the step times, ending with the total."""
        width = max([len(n) for n, _ in self.times] + [5])
        lines = [f"{self.title} step times:"]
        lines += [f"  {n:<{width}}  {t:7.1f} s" for n, t in self.times]
        lines.append(f"  {'total':<{width}}  {self.total():7.1f} s")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, float]:
        """Step name -> seconds, rounded to 0.1 s (for JSON reports)."""
        return {n: round(t, 1) for n, t in self.times}
