from __future__ import annotations

import os
import subprocess
import time

import pytest

import lab.runner as runner_mod
from lab.errors import LabError
from lab.runner import Runner, process_state
from lab.runtime import cwd_line as reproducer


def test_log_has_command_output_and_status(runner: Runner) -> None:
    res = runner.run(["sh", "-c", "echo hello; exit 0"], "say hello", env_extra={"X": "1 2"})
    text = res.log.read_text()
    assert "reproduce: env X='1 2' sh -c 'echo hello; exit 0'" in text
    assert "hello" in text and "exit status 0" in text
    assert "sh -c 'echo hello; exit 0'" in (runner.log_dir / "commands.sh").read_text()


def test_failure_raises_with_log_and_reproducer(runner: Runner) -> None:
    with pytest.raises(LabError) as exc:
        runner.run(["sh", "-c", "echo broken >&2; exit 3"], "break")
    assert "exit status 3" in exc.value.message and "broken" in exc.value.message
    assert exc.value.log and exc.value.log.endswith("001-break.log")
    assert exc.value.fix and "sh -c" in exc.value.fix


def test_timeout_kills_the_process_tree(runner: Runner) -> None:
    res = runner.run(["sh", "-c", "sleep 30 & sleep 30; echo never"], "hang", timeout=0.5, check=False)
    assert res.timed_out and not res.ok and res.seconds < 10
    assert "timed out" in res.log.read_text()


def test_missing_command_is_a_lab_error(runner: Runner) -> None:
    with pytest.raises(LabError, match="command not found"):
        runner.run(["definitely-not-a-tool-xyz"], "missing")


def test_reproducer_quotes() -> None:
    assert reproducer(["a", "b c"], None, None) == "a 'b c'"


def test_grace_marker_kills_a_command_that_does_not_finish(runner: Runner) -> None:
    grace = [("ALL-DONE", 30.0), ("WEDGED", 0.5)]
    res = runner.run(["sh", "-c", "echo WEDGED; sleep 30"], "wedged", timeout=60, check=False, grace_after=grace)
    assert not res.ok and res.seconds < 10 and not res.timed_out
    quick = runner.run(["sh", "-c", "echo WEDGED; exit 0"], "recovers", check=False, grace_after=grace)
    assert quick.ok  # a command that exits on its own within the grace is left alone


def test_a_descendant_holding_the_output_does_not_hang_the_run(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    # setsid puts the sleeper outside the command's process group: the kill
    # cannot reach it and it keeps stdout open; the lab must stop waiting.
    monkeypatch.setattr(runner_mod, "EXIT_WAIT_S", 1.0)
    start = time.monotonic()
    res = runner.run(["sh", "-c", "echo started; setsid sleep 30; echo never"], "escape", timeout=0.5, check=False)
    assert time.monotonic() - start < 10
    assert res.timed_out
    assert "descendant" in res.stuck
    assert "started" in res.output
    assert "# lab: ended, but a descendant" in res.log.read_text()


def test_a_finished_command_whose_descendant_keeps_the_pipe_is_not_waited_for(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_mod, "EXIT_WAIT_S", 1.0)
    start = time.monotonic()
    res = runner.run(["sh", "-c", "setsid sleep 30 & echo done"], "daemon", check=False)
    assert time.monotonic() - start < 10
    assert res.returncode == 0 and not res.timed_out
    assert "done" in res.output and res.stuck


def test_process_state_names_a_live_and_a_gone_process() -> None:
    assert process_state(os.getpid()).startswith("state ")
    assert process_state(2**22 + 12345) == "gone"


def test_a_silent_command_is_killed_after_on_idle(runner: Runner) -> None:
    called: list[bool] = []
    start = time.monotonic()
    res = runner.run(
        ["sh", "-c", "echo one; sleep 0.5; echo two; sleep 30"], "silent", check=False, idle_timeout=1.5,
        on_idle=lambda: called.append(True),
    )  # fmt: skip
    assert time.monotonic() - start < 10
    assert res.silent and res.timed_out and called == [True]
    assert res.output.split() == ["one", "two"]  # the 0.5 s pause did not count
    assert "without output" in res.log.read_text()


def test_a_chatty_command_is_not_idle(runner: Runner) -> None:
    res = runner.run(["sh", "-c", "for i in 1 2 3 4; do echo $i; sleep 0.6; done"], "chatty", idle_timeout=1.5)
    assert res.ok and not res.silent


def test_a_command_bounded_by_its_silence_is_known_while_it_runs(runner: Runner) -> None:
    # pid_of (the level-2 exit sample) and the watchdog find it; its deadline
    # moves with its output, and it is forgotten when it ends.
    import threading

    seen: list[tuple[int | None, float]] = []

    def look() -> None:
        for _ in range(3):
            time.sleep(0.7)
            pid = runner_mod.pid_of("talker")
            with runner_mod._DEADLINES_LOCK:
                deadline = runner_mod._DEADLINES.get(pid or -1, (0.0, ""))[0]
            seen.append((pid, deadline))

    watcher = threading.Thread(target=look)
    watcher.start()
    res = runner.run(["sh", "-c", "for i in 1 2 3 4 5; do echo $i; sleep 0.5; done"], "talker", idle_timeout=2.0)
    watcher.join()
    assert res.ok and len(seen) == 3
    assert all(pid is not None for pid, _ in seen)
    assert seen[0][1] < seen[1][1] < seen[2][1]  # pushed on by each line
    assert runner_mod.pid_of("talker") is None


def test_reap_overdue_kills_a_silent_command_whose_runner_missed_it(runner: Runner) -> None:
    # The runner's own idle check lives on a thread a stalled level-1 CPU may
    # never wake: the watchdog must see the command's deadline too.
    import threading

    results = []
    thread = threading.Thread(target=lambda: results.append(runner.run(["sleep", "30"], "silent", idle_timeout=1000, check=False)))
    thread.start()
    deadline = time.monotonic() + 5
    while (pid := runner_mod.pid_of("silent")) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid is not None
    with runner_mod._DEADLINES_LOCK:  # its silence is up, as far as the watchdog knows
        runner_mod._DEADLINES[pid] = (time.monotonic() - 1, "silent")
    reaped = runner_mod.reap_overdue(grace=0)
    thread.join(10)
    assert len(reaped) == 1 and reaped[0].startswith("silent (pid ")
    assert results and results[0].returncode != 0


def test_reap_overdue_kills_a_command_whose_timer_did_not_fire(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-in for a timeout timer that never fires (a level-1 CPU that
    # stopped taking interrupts): the timer is a no-op here.
    class DeadTimer:
        def __init__(self, *args: object) -> None: ...
        def start(self) -> None: ...
        def cancel(self) -> None: ...

    monkeypatch.setattr(runner_mod.threading, "Timer", DeadTimer)
    reaped: list[str] = []

    def reaper() -> None:
        time.sleep(1.5)
        reaped.extend(runner_mod.reap_overdue(grace=0.5))

    import threading

    threading.Thread(target=reaper).start()
    start = time.monotonic()
    res = runner.run(["sleep", "30"], "stuck", timeout=0.5, check=False)
    assert time.monotonic() - start < 10
    assert res.returncode != 0
    assert len(reaped) == 1 and reaped[0].startswith("stuck (pid ") and "past its timeout" in reaped[0]
    assert runner_mod.reap_overdue(grace=0) == []  # a finished command is no longer tracked


def test_a_later_marker_brings_the_kill_forward_never_back(runner: Runner) -> None:
    grace = [("STALL", 30.0), ("UNRECOVERABLE", 0.5)]
    res = runner.run(["sh", "-c", "echo STALL; echo UNRECOVERABLE; sleep 30"], "forward", timeout=60, check=False, grace_after=grace)
    assert not res.ok and res.seconds < 10
    res = runner.run(["sh", "-c", "echo UNRECOVERABLE; echo STALL; sleep 30"], "not-back", timeout=60, check=False, grace_after=grace)
    assert not res.ok and res.seconds < 10


def test_survivors_names_live_commands_long_past_their_timeout() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        with runner_mod._DEADLINES_LOCK:
            runner_mod._DEADLINES[child.pid] = (time.monotonic() - 100, "qemu stand-in")
        assert runner_mod.survivors(after=200) == {}  # not late enough yet
        found = runner_mod.survivors(after=50)
        assert list(found) == [child.pid] and found[child.pid].startswith(f"qemu stand-in (pid {child.pid}, state ")
        assert found[child.pid].endswith("it survives SIGKILL")
        child.kill()
        child.wait()
        # Gone, yet still registered: the runner waiting for it never came back.
        assert runner_mod.survivors(after=50)[child.pid].endswith(
            f"(pid {child.pid}, gone) 100 s past its timeout: the lab's wait for it never returned"
        )
        with runner_mod._DEADLINES_LOCK:
            runner_mod._DEADLINES.pop(child.pid)
        assert runner_mod.survivors(after=50) == {}
    finally:
        child.kill()
        with runner_mod._DEADLINES_LOCK:
            runner_mod._DEADLINES.pop(child.pid, None)


def test_stop_all_kills_every_running_command_and_its_tree(runner: Runner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading

    pidfile = tmp_path / "child"
    results: list[runner_mod.Result] = []
    cmd = ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; echo started; wait"]
    thread = threading.Thread(target=lambda: results.append(runner.run(cmd, "long", check=False)))
    thread.start()
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert len(runner_mod.stop_all()) == 1
    thread.join(timeout=20)
    assert results and not results[0].ok and results[0].seconds < 15
    state = runner_mod.state_and_wchan(__import__("pathlib").Path(f"/proc/{child}"))
    assert state is None or state[0] in ("Z", "X")  # the backgrounded child went with its group
    assert runner_mod.stop_all() == []  # nothing left registered


def test_the_cli_stops_running_commands_when_it_is_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    import lab.cli as cli

    stopped: list[bool] = []

    def interrupted(argv: list[str] | None) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_main", interrupted)
    monkeypatch.setattr(cli.signal, "signal", lambda *args: None)  # pytest keeps its own handlers
    monkeypatch.setattr(cli, "stop_all", lambda: stopped.append(True) or [4242])
    assert cli.main(["run"]) == 130 and stopped == [True]


def test_sigterm_ends_the_lab_at_once_and_stops_its_commands(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import sys

    pidfile = tmp_path / "child"
    code = (
        "import pathlib, lab.cli as cli, lab.runner as r;"
        f"cli._main = lambda argv: r.Runner(pathlib.Path({str(tmp_path / 'logs')!r})).run("
        f"['sh', '-c', 'echo $$ > {pidfile}; sleep 60'], 'long', timeout=600, check=False).returncode;"
        "raise SystemExit(cli.main([]))"
    )
    lab = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pidfile.read_text())
    started = time.monotonic()
    lab.send_signal(signal.SIGTERM)
    out = lab.communicate(timeout=20)[0]
    # No wait for the 600 s timeout timer; the command's group is gone.
    assert lab.returncode == 128 + signal.SIGTERM and time.monotonic() - started < 10, out
    assert "stopped 1 command(s)" in out
    state = runner_mod.state_and_wchan(__import__("pathlib").Path(f"/proc/{child}"))
    assert state is None or state[0] in ("Z", "X")


def test_stop_all_lets_a_command_clean_up_before_it_is_killed(runner: Runner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A nested lab run (`lab mutants`) stops its own VMs on SIGTERM; a SIGKILL would orphan them."""
    import threading

    cleaned, ready = tmp_path / "cleaned", tmp_path / "ready"
    script = f"trap 'echo done > {cleaned}; exit 0' TERM; touch {ready}; while :; do sleep 0.1; done"
    thread = threading.Thread(target=lambda: runner.run(["sh", "-c", script], "cleans up", check=False))
    thread.start()
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner_mod.stop_all(grace=5) != []
    thread.join(timeout=20)
    assert cleaned.exists()


def test_a_background_command_is_logged_teed_and_stopped_with_its_tree(runner: Runner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal

    from lab.runner import _RUNNING

    console = tmp_path / "console.log"
    script = "echo ready; sleep 1000 & while :; do echo tick; sleep 0.05; done"
    bg = runner.start(["sh", "-c", script], "background thing", tee=console)
    assert bg.wait_for("ready", 10, whole_line=True)
    assert not bg.wait_for("never printed", 0.3)
    assert bg.pid in _RUNNING
    assert bg.stop(signal.SIGTERM, grace=5) is not None
    assert bg.pid not in _RUNNING
    log = next(runner.log_dir.glob("*-background-thing.log")).read_text()
    assert "# reproduce: sh -c" in log and "ready" in log and "# exit status" in log
    assert console.read_text().startswith("ready\ntick\n")  # the output alone, no header
    assert "sh -c" in (runner.log_dir / "commands.sh").read_text()


def test_wait_for_returns_as_soon_as_the_command_ends_without_the_marker(runner: Runner) -> None:
    import time

    bg = runner.start(["sh", "-c", "echo attached-not; exit 3"], "ends early")
    start = time.monotonic()
    assert not bg.wait_for("attached", 30, whole_line=True)
    assert time.monotonic() - start < 10
    assert bg.wait(10) == 3


def test_every_external_command_goes_through_the_runner() -> None:
    """Only lab/runner.py may start processes: everything else is logged with `# reproduce:`."""
    import re

    from lab.paths import REPO

    starts = re.compile(r"\bimport subprocess\b|\bsubprocess\.|\bos\.(system|popen|exec\w*|spawn\w*)\(")
    offenders = [
        f"{path.relative_to(REPO)}:{no}"
        for path in sorted((REPO / "lab").rglob("*.py"))
        if path.name != "runner.py"
        for no, line in enumerate(path.read_text().splitlines(), 1)
        if starts.search(line)
    ]
    assert offenders == []


def test_a_signal_while_a_command_is_being_started_exits_once_stop_all_can_see_it() -> None:
    """SIGTERM between a command's fork and its entry in the running set left it
    running after the lab exited (seen under load): the exit waits for the entry."""
    import signal

    reached: list[str] = []
    with pytest.raises(SystemExit) as exc, runner_mod._starting():
        runner_mod.exit_on_signal(signal.SIGTERM, None)  # arrives mid-start: deferred
        reached.append("registered")  # what the start does next
    assert exc.value.code == 128 + signal.SIGTERM and reached == ["registered"]
    with pytest.raises(SystemExit):
        runner_mod.exit_on_signal(signal.SIGTERM, None)  # outside a start: at once
    with pytest.raises(KeyboardInterrupt), runner_mod._starting():
        runner_mod.exit_on_signal(signal.SIGINT, None)  # Ctrl-C: the same, as a KeyboardInterrupt
        reached.append("registered too")
    assert reached[-1] == "registered too"


def test_stop_all_waits_for_a_command_another_thread_is_starting() -> None:
    import threading

    entered, registered = threading.Event(), []

    def start() -> None:
        with runner_mod._starting():
            entered.set()
            time.sleep(0.3)
            registered.append(time.monotonic())

    thread = threading.Thread(target=start)
    thread.start()
    entered.wait(5)
    runner_mod.stop_all(grace=0.1)
    assert registered and registered[0] <= time.monotonic()
    thread.join()
