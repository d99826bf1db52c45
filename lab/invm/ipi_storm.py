"""Cross-CPU wake-ups in level 1 while level-2 vCPUs run.

Two processes, each pinned to its own CPU, wake each other through pipes
as fast as they can. Every wake-up of a task on a CPU that is running a
vCPU is an interrupt (reschedule or call-function IPI) that must force a
#VMEXIT. The boost policy raises the same kind of IPIs (sched_setattr of a
vCPU thread running elsewhere, irq_work); the control's `base-ipi` cell
raises them with none of our code loaded, to learn whether the emulator
mishandles host interrupts around VMRUN by itself.

Stdlib only, like the rest of lab.invm.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


class _Stop(Exception):
    """Raised by SIGTERM: a handler that only set a flag left os.read()
    blocked (it retries after EINTR), and a unit test run hung there."""


def _on_term(_signum: int, _frame: object) -> None:
    raise _Stop


def _bounce(cpu: int, read_fd: int, write_fd: int, serve: bool, count_path: Path | None, others: list[int]) -> None:
    signal.signal(signal.SIGTERM, _on_term)
    trips = 0
    try:
        # Only its own two ends: a peer that is gone is then EOF, not a wait forever.
        for fd in others:
            os.close(fd)
        os.sched_setaffinity(0, {cpu})
        if serve:
            os.write(write_fd, b"x")
        while os.read(read_fd, 1):
            os.write(write_fd, b"x")
            trips += 1
    except (_Stop, OSError):
        pass
    finally:
        if count_path is not None:
            count_path.write_text(f"{trips}\n")
        os._exit(0)


class IpiStorm:
    """Start with start(), end with stop(), which returns the round trips made."""

    def __init__(self, cpus: tuple[int, int], count_path: Path) -> None:
        self.cpus = cpus
        self.count_path = count_path
        self.pids: list[int] = []

    def start(self) -> None:
        a_to_b_r, a_to_b_w = os.pipe()
        b_to_a_r, b_to_a_w = os.pipe()
        ends = [a_to_b_r, a_to_b_w, b_to_a_r, b_to_a_w]
        for cpu, read_fd, write_fd, serve, count in (
            (self.cpus[0], b_to_a_r, a_to_b_w, True, self.count_path),
            (self.cpus[1], a_to_b_r, b_to_a_w, False, None),
        ):
            pid = os.fork()
            if pid == 0:
                _bounce(cpu, read_fd, write_fd, serve, count, [fd for fd in ends if fd not in (read_fd, write_fd)])
            self.pids.append(pid)
        for fd in ends:
            os.close(fd)

    def stop(self) -> int:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in self.pids:
            os.waitpid(pid, 0)
        self.pids = []
        try:
            return int(self.count_path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0
