"""The flipper of one named thread (the admin-flip phase), on a real thread of this process."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from lab.invm.rt_flip import Flip, RtFlip


def test_one_thread_flipped_to_the_given_priority_and_left_normal(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a thread to SCHED_FIFO needs CAP_SYS_NICE")
    stop, ready = threading.Event(), threading.Event()
    tid = 0

    def worker() -> None:  # not named like a vCPU thread: only the tid given is flipped
        nonlocal tid
        tid = threading.get_native_id()
        ready.set()
        while not stop.is_set():
            time.sleep(0.001)

    thread = threading.Thread(target=worker)
    thread.start()
    ready.wait(5)
    flipper = RtFlip(tmp_path / "flips.txt", Flip(tid, priority=60, hold_s=0.001, gap_s=0.001, flipper_priority=70))
    flipper.start()
    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 10
    while (os.SCHED_FIFO, 60) not in seen and time.monotonic() < deadline:
        seen.add((os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority))
    flips = flipper.stop()
    after = os.sched_getscheduler(tid)
    stop.set()
    thread.join()
    assert (os.SCHED_FIFO, 60) in seen, f"never SCHED_FIFO 60: {seen}"
    assert flips > 0
    assert after == os.SCHED_OTHER
