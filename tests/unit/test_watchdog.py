from __future__ import annotations

import os
import subprocess
import sys
import time

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
