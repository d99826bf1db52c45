"""The flipper (lab.invm.rt_flip) on real threads of this process: every vCPU
thread of a /proc view, or one thread given by tid (the admin-flip phase)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lab.invm.rt_flip import Flip, RtFlip, vcpu_threads


@pytest.fixture(autouse=True)
def _needs_cap_sys_nice() -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a thread to SCHED_FIFO needs CAP_SYS_NICE")


@contextmanager
def _sleeping_thread(comm: str | None = None) -> Iterator[int]:
    """A thread of this process that sleeps until the block ends (named `comm` if given); yields its tid."""
    stop, ready = threading.Event(), threading.Event()
    tid = 0

    def sleeper() -> None:
        nonlocal tid
        tid = threading.get_native_id()
        if comm is not None:
            Path(f"/proc/self/task/{tid}/comm").write_text(comm)
        ready.set()
        while not stop.is_set():
            time.sleep(0.001)

    thread = threading.Thread(target=sleeper)
    thread.start()
    ready.wait(5)
    try:
        yield tid
    finally:
        stop.set()
        thread.join()


def _flip_until_seen(flipper: RtFlip, tid: int, want: tuple[int, int] | None = None) -> tuple[bool, int, int]:
    """Run the flipper until `tid` is seen SCHED_FIFO (at `want`'s priority, if given) or 10 s pass;
    whether it was, the flips counted, and the thread's policy once the flipper stopped."""
    flipper.start()
    seen = False
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        policy = os.sched_getscheduler(tid)
        seen = (policy, os.sched_getparam(tid).sched_priority) == want if want else policy == os.SCHED_FIFO
    flips = flipper.stop()
    return seen, flips, os.sched_getscheduler(tid)


def test_rt_flip_boosts_a_vcpu_thread_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    """A thread of this process named as QEMU names its vCPUs is made FIFO
    now and then, and is SCHED_OTHER again once the flipper stops. Only
    this process is visible to the flipper (its own /proc view), so no real
    VM on the machine is touched."""
    with _sleeping_thread("CPU 0/KVM") as tid:
        view = tmp_path / "proc"
        view.mkdir()
        (view / str(os.getpid())).symlink_to(f"/proc/{os.getpid()}")
        assert vcpu_threads(view) == [tid]
        seen_fifo, flips, after = _flip_until_seen(RtFlip(tmp_path / "flips.txt", proc=view), tid)
    assert seen_fifo, "the vCPU thread was never made SCHED_FIFO"
    assert flips > 0
    assert after == os.SCHED_OTHER


def test_one_thread_flipped_to_the_given_priority_and_left_normal(tmp_path: Path) -> None:
    # Not named like a vCPU thread: only the tid given is flipped.
    with _sleeping_thread() as tid:
        flip = Flip(tid, priority=60, hold_s=0.001, gap_s=0.001, flipper_priority=70)
        seen, flips, after = _flip_until_seen(RtFlip(tmp_path / "flips.txt", flip), tid, (os.SCHED_FIFO, 60))
    assert seen, "never SCHED_FIFO 60"
    assert flips > 0
    assert after == os.SCHED_OTHER
