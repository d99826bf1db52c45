"""The stress suite's host load, for as long as it is wanted.

The hostile part measures level 1 with `stress-ng --cpu <every CPU>` and a
`cyclictest` at SCHED_FIFO 5 waking every millisecond while level-2 guests
boot and run; its vanilla rounds (no policy, no area registered yet) have
shown `null-percpu` (2026-12-04, run 20261204T113213Z-1981). The emulator
control's `base-load` cell runs the same load on the unpatched kernel to
learn whether that oops needs our code or only this load under the
emulator. Stdlib and the lab's runner only, like the rest of lab.invm.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab.invm.pvsched_host import stress_ng_command
from lab.runner import Background, Runner

HOST_CT_PRIORITY = 5  # below boosts, as in the benchmark: boosts can hurt it


def every_cpu_command(timeout_s: int, *extra: str) -> list[str]:
    """stress-ng on every CPU for `timeout_s` seconds (0: until stopped)."""
    return stress_ng_command("--cpu", str(os.cpu_count() or 1), "--timeout", str(timeout_s), *extra)


def cyclictest_command(*extra: str) -> list[str]:
    """A cyclictest waking every millisecond at HOST_CT_PRIORITY."""
    return ["cyclictest", "-m", "-p", str(HOST_CT_PRIORITY), "-i", "1000", *extra, "-q"]


def ordinary_cyclictest_command(*extra: str) -> list[str]:
    """A cyclictest waking every millisecond at SCHED_OTHER, as the host's ordinary tasks run."""
    return ["cyclictest", "-m", "--policy=other", "-i", "1000", *extra, "-q"]


class HostLoad:
    """stress-ng on every CPU and a 1 kHz cyclictest below the boosts' priority."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._procs: list[Background] = []

    def start(self) -> None:
        self._procs = [
            self.runner.start(every_cpu_command(0), "host load stress-ng", cwd=Path("/tmp")),
            self.runner.start(cyclictest_command(), "host load cyclictest"),
        ]

    def stop(self) -> bool:
        """End the load; whether all of it was still running until then
        (a load that died early made the run one of another cell)."""
        alive = bool(self._procs) and all(p.poll() is None for p in self._procs)
        for p in self._procs:
            p.stop(grace=10)
        return alive
