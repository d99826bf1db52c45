from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from lab.invm import watchdog


def test_process_table_shows_a_sleeping_child_with_its_state() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.2)
        rows = [r for r in watchdog.process_table() if r.split()[0] == str(child.pid)]
        assert len(rows) == 1
        pid, state, _wchan, *cmd = rows[0].split()
        assert state == "S" and cmd == ["sleep", "30"]
    finally:
        child.kill()
        child.wait()


def test_report_has_stacks_and_this_process() -> None:
    # faulthandler writes to a real file descriptor, so use a pipe via a child.
    code = "import sys; from lab.invm import watchdog; watchdog.report(sys.stdout, '12.34')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "still running at uptime 12.34" in out
    assert 'File "<string>"' in out  # the Python stack of the reporting thread
    assert "pid state wchan cmdline" in out


def test_start_beats_and_reports_periodically_until_stopped() -> None:
    code = (
        "import time; from lab.invm import watchdog; stop = watchdog.start(0.6, beat=0.2); time.sleep(1.3); stop.set();"
        "time.sleep(0.5); print('END')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    reports = out.count("LAB-WATCHDOG level 1 still running")
    beats = out.count("LAB-HEARTBEAT ")
    assert 1 <= reports <= 2 and 3 <= beats <= 5
    assert out.rstrip().endswith("END")


def test_kernel_threads_are_left_out() -> None:
    pids = {row.split()[0] for row in watchdog.process_table()}
    assert "2" not in pids  # kthreadd has no command line
    assert str(os.getpid()) in pids


def test_a_command_surviving_sigkill_is_reported_wedged_once() -> None:
    code = (
        "import time; from lab.invm import watchdog;"
        "watchdog.survivors = lambda after: {7: 'level2 boot (kvm) (pid 7, state R, wchan 0) 170 s past its timeout: it survives SIGKILL'};"
        "stop = watchdog.start(60, beat=0.1); time.sleep(0.55); stop.set(); time.sleep(0.2)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    wedged = [line for line in out.splitlines() if line.startswith("LAB-WEDGED ")]
    assert len(wedged) == 1 and "pid 7, state R" in wedged[0] and "survives SIGKILL" in wedged[0]


def test_a_thread_asleep_without_running_is_found_stalled_once() -> None:
    from pathlib import Path

    child = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.2)
        watch = watchdog.MainThreadWatch(Path(f"/proc/{child.pid}/task/{child.pid}"), stall_after=0.5)
        assert watch.check(100.0) == ""  # first look: nothing to compare with
        assert watch.check(100.4) == ""  # not long enough yet
        report = watch.check(100.6)
        assert report.startswith("LAB-WEDGED ") and "has not run for 1 s" in report and "did not fire" in report
        assert watch.check(101.0) == ""  # said once
    finally:
        child.kill()
        child.wait()


def test_a_timed_wait_past_its_deadline_is_stalled_and_a_long_or_untimed_one_is_not() -> None:
    from pathlib import Path

    # Stress run 1126: the main thread's 0.1 s Event.wait (a futex with a
    # deadline) slept 10 minutes while a level-1 CPU ran level 2. Its
    # deadline is read from the thread's memory and compared with the clock.
    short = subprocess.Popen([sys.executable, "-c", "import threading; threading.Event().wait(30)"])
    untimed = subprocess.Popen([sys.executable, "-c", "import threading; threading.Event().wait()"])
    try:
        time.sleep(0.5)
        task = Path(f"/proc/{short.pid}/task/{short.pid}")
        overdue = watchdog.futex_overdue(task)
        assert overdue is not None and -30 < overdue < -29  # the deadline is ~29.5 s away
        # The same wait seen 60 s on, its timer never having fired: stalled.
        later = watchdog.futex_overdue(task, now_mono=time.monotonic() + 60, now_real=time.time() + 60)
        assert later is not None and later > watchdog.FUTEX_OVERDUE_S
        assert watchdog.futex_overdue(Path(f"/proc/{untimed.pid}/task/{untimed.pid}")) is None
        for proc in (short, untimed):  # neither is overdue now: a long wait may last
            watch = watchdog.MainThreadWatch(Path(f"/proc/{proc.pid}/task/{proc.pid}"), stall_after=0.2)
            assert watch.check(10.0) == "" and watch.check(10.3) == "", proc.args
    finally:
        for proc in (short, untimed):
            proc.kill()
            proc.wait()


def test_a_main_thread_whose_short_wait_never_returned_is_reported_wedged(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    waiting = subprocess.Popen([sys.executable, "-c", "import threading; threading.Event().wait(30)"])
    try:
        time.sleep(0.5)
        monkeypatch.setattr(watchdog, "futex_overdue", lambda task: 600.0)  # as if 10 minutes had passed
        watch = watchdog.MainThreadWatch(Path(f"/proc/{waiting.pid}/task/{waiting.pid}"), stall_after=0.2)
        assert watch.check(10.0) == ""
        report = watch.check(10.3)
        assert report.startswith("LAB-WEDGED ") and "asleep in futex" in report
    finally:
        waiting.kill()
        waiting.wait()


def test_a_thread_that_keeps_waking_or_blocks_on_a_pipe_is_not_stalled() -> None:
    from pathlib import Path

    poller = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(0.02)"])
    reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        for proc in (poller, reader):
            watch = watchdog.MainThreadWatch(Path(f"/proc/{proc.pid}/task/{proc.pid}"), stall_after=0.2)
            reports = []
            for step in range(6):
                reports.append(watch.check(step * 0.1))
                time.sleep(0.1)
            assert reports == [""] * 6, proc.args
    finally:
        for proc in (poller, reader):
            proc.kill()
            proc.wait()


def test_the_watchdog_reports_its_main_thread_asleep_past_any_poll() -> None:
    code = (
        "import time; from lab.invm import watchdog; watchdog.MAIN_STALL_S = 0.3;"
        "stop = watchdog.start(60, beat=0.1); time.sleep(1.0); stop.set(); time.sleep(0.2)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    wedged = [line for line in out.splitlines() if line.startswith("LAB-WEDGED ")]
    assert len(wedged) == 1 and "main thread has not run" in wedged[0], out
    polling = code.replace("time.sleep(1.0)", "[time.sleep(0.05) for _ in range(20)]")
    out = subprocess.run([sys.executable, "-c", polling], capture_output=True, text=True, check=True).stdout
    assert "LAB-WEDGED" not in out, out
