"""Flip level-2 vCPU threads between SCHED_FIFO and SCHED_OTHER from user space.

What the boost policy does to level 1's scheduler, with none of our code:
in the stress suite's hostile rounds each vCPU thread is boosted to FIFO
about ten times a second for a few ms (stress-boost-stats.json), and every
boost or unboost of a thread running on the other CPU is a reschedule IPI
that lands while that CPU runs level 2. The emulator control's `base-flip`
cell does the same with sched_setscheduler() on the unpatched kernel, to
learn whether the `null-percpu` oops (then seen only with a policy attached)
needs our code or only vCPU threads changing class under the emulator.

The functional suite's admin-flip phase flips one vCPU thread the same way,
as an admin racing the boosts KVM applies to it (lab.invm.pvsched_host).

Stdlib only, like the rest of lab.invm.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from lab.invm.child import fork_run, terminate

# QEMU names its KVM vCPU threads "CPU <n>/KVM".
VCPU_COMM = re.compile(r"CPU \d+/KVM")
VCPU_PRIORITY = 10  # the boost policy's default FIFO priority
FLIPPER_PRIORITY = 20  # above the vCPUs, as the boost's irq_work is
HOLD_S = 0.005
GAP_S = 0.045
RESCAN_S = 0.5


class _Stop(Exception):
    """Raised by SIGTERM, so a sleep or a syscall in progress ends at once."""


def _on_term(_signum: int, _frame: object) -> None:
    raise _Stop


def vcpu_threads(proc: Path = Path("/proc")) -> list[int]:
    """Thread ids of every QEMU vCPU thread on this machine."""
    tids = []
    for comm in proc.glob("[0-9]*/task/[0-9]*/comm"):
        try:
            name = comm.read_text().strip()
        except OSError:
            continue  # the thread ended while we looked
        if VCPU_COMM.fullmatch(name):
            tids.append(int(comm.parent.name))
    return sorted(tids)


def _set(tids: list[int], policy: int, priority: int) -> int:
    done = 0
    for tid in tids:
        with contextlib.suppress(OSError):  # a thread that ended since the scan
            os.sched_setscheduler(tid, policy, os.sched_param(priority))
            done += 1
    return done


def _flip(count_path: Path, flip: Flip, proc: Path) -> None:
    signal.signal(signal.SIGTERM, _on_term)
    flips = 0
    tids: list[int] = [flip.tid] if flip.tid is not None else []
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(flip.flipper_priority))
        next_scan = 0.0 if flip.tid is None else float("inf")
        while True:
            if time.monotonic() >= next_scan:
                tids, next_scan = vcpu_threads(proc), time.monotonic() + RESCAN_S
            flips += _set(tids, os.SCHED_FIFO, flip.priority)
            time.sleep(flip.hold_s)
            _set(tids, os.SCHED_OTHER, 0)
            time.sleep(flip.gap_s)
    except (_Stop, OSError):
        pass
    finally:
        with contextlib.suppress(_Stop):
            _set(tids, os.SCHED_OTHER, 0)
            count_path.write_text(f"{flips}\n")
        os._exit(0)


@dataclass(frozen=True)
class Flip:
    """What to flip: `tid` (None: every vCPU thread, rescanned), to SCHED_FIFO
    `priority` for `hold_s`, then SCHED_OTHER for `gap_s`; the flipper runs at
    SCHED_FIFO `flipper_priority`, above the threads it flips."""

    tid: int | None = None
    priority: int = VCPU_PRIORITY
    hold_s: float = HOLD_S
    gap_s: float = GAP_S
    flipper_priority: int = FLIPPER_PRIORITY


class RtFlip:
    """start() forks the flipper; stop() ends it (leaving the threads SCHED_OTHER)
    and returns how many times it made them SCHED_FIFO."""

    def __init__(self, count_path: Path, flip: Flip = Flip(), proc: Path = Path("/proc")) -> None:
        self.count_path, self.flip, self.proc = count_path, flip, proc
        self.pid = 0

    def start(self) -> None:
        self.pid = fork_run(lambda: _flip(self.count_path, self.flip, self.proc))

    def stop(self) -> int:
        if self.pid:
            terminate(self.pid)
            self.pid = 0
        try:
            return int(self.count_path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0
