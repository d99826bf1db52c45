"""A host RT task that holds one CPU most of the time.

Pinned beside a boosted vCPU thread and above its priority, it leaves that
thread less CPU than the cap's budget in every period, while the guest's RT
task keeps the boost on: a boost that outlasts periods without using its
budget in any (the cap's period must roll over under it).

Stdlib only, like the rest of lab.invm.
"""

from __future__ import annotations

import os
import signal
import time

from lab.invm.child import fork_run, terminate


def _hog(cpu: int, priority: int, busy_s: float, idle_s: float) -> None:
    stop = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        os.sched_setaffinity(0, {cpu})
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        while not stop:
            until = time.monotonic() + busy_s
            while time.monotonic() < until and not stop:
                pass
            time.sleep(idle_s)
    finally:
        os._exit(0)


class RtHog:
    """start() forks the hog; stop() ends it (it spins only while started)."""

    def __init__(self, cpu: int, priority: int, busy_s: float, idle_s: float) -> None:
        self.cpu, self.priority, self.busy_s, self.idle_s = cpu, priority, busy_s, idle_s
        self.pid: int | None = None

    def start(self) -> None:
        self.pid = fork_run(lambda: _hog(self.cpu, self.priority, self.busy_s, self.idle_s))

    def stop(self) -> None:
        if self.pid is None:
            return
        terminate(self.pid)
        self.pid = None
