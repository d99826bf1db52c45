"""Runs every external command the lab needs, and logs it so it can be rerun.

Each command gets logs/NNN-<label>.log holding the exact command line (with
the working directory and the environment it added), its output, its exit
status and how long it took. logs/commands.sh collects the same command
lines as a script a user can replay by hand.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lab.errors import LabError
from lab.runtime import ContainerRuntime, Launch, NativeRuntime, Runtime, processes_with_token, signal_token


@dataclass
class Result:
    cmd: list[str]
    returncode: int
    output: str
    seconds: float
    log: Path
    timed_out: bool = False
    stuck: str = ""  # why the lab stopped waiting for a killed command (see Runner.run)
    silent: bool = False  # killed for printing nothing for idle_timeout seconds

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def _signal_group(pid: int, sig: int) -> None:
    """`sig` to a command's process group and, for one in a container, to its
    processes there (a killed `exec` client leaves them running)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    with _DEADLINES_LOCK:
        token = _TOKENS.get(pid)
    if token is not None:
        signal_token(token, sig)


def _kill_group(pid: int) -> None:
    _signal_group(pid, signal.SIGKILL)


def state_and_wchan(proc_dir: Path) -> tuple[str, str] | None:
    """A process's scheduler state letter and kernel wait channel from /proc, None once it is gone."""
    try:
        state = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0]
        wchan = (proc_dir / "wchan").read_text().strip() or "-"
    except (OSError, IndexError):
        return None
    return state, wchan


def process_state(pid: int) -> str:
    """'state S, wchan W' of a process, for reports on one that would not die."""
    found = state_and_wchan(Path(f"/proc/{pid}"))
    return f"state {found[0]}, wchan {found[1]}" if found else "gone"


# How long a killed command may take to close its output and be reaped
# before the lab stops waiting (an unkillable process must not hang a run).
EXIT_WAIT_S = 30.0


# Commands with a timeout, while they run: pid -> (deadline, label). The
# level-1 watchdog reaps overdue ones (reap_overdue): under TCG a level-1 CPU
# can stop taking interrupts, and a timeout timer sleeping on it never fires.
_DEADLINES: dict[int, tuple[float, str]] = {}
_DEADLINES_LOCK = threading.Lock()


# Process groups of commands running now. Each runs in a session of its own
# (so a timeout kills its whole tree), which also keeps a Ctrl-C or a
# SIGTERM aimed at the lab from reaching it: stop_all() is the lab's way out.
_RUNNING: set[int] = set()
# Of those, commands in a container: pid of the client -> token of the command.
_TOKENS: dict[int, str] = {}
# Containers started for runtimes and not yet removed: what removes each.
_CONTAINERS: dict[str, tuple[list[str], dict[str, str]]] = {}

# Commands between their fork and their entry in _RUNNING. A signal that
# ended the lab in that window left the command running, unseen by
# stop_all() (a unit test caught it under load): the main thread defers
# the exit until the entry is made, stop_all() waits for other threads'.
_STARTING = 0
_MAIN_STARTING = threading.Event()
_PENDING_EXIT: list[BaseException] = []
START_WAIT_S = 5.0


STOP_GRACE_S = 15.0


@contextlib.contextmanager
def _starting() -> Iterator[None]:
    """Around a fork and its entry in _RUNNING."""
    global _STARTING
    main = threading.current_thread() is threading.main_thread()
    with _DEADLINES_LOCK:
        _STARTING += 1
    if main:
        _MAIN_STARTING.set()
    try:
        yield
    finally:
        with _DEADLINES_LOCK:
            _STARTING -= 1
        if main:
            _MAIN_STARTING.clear()
            if _PENDING_EXIT:
                raise _PENDING_EXIT.pop()


def _spawn(launch: Launch, label: str, stdin: bool) -> subprocess.Popen[str]:
    """Start a command in a session of its own (so stopping it stops its whole
    tree), output on one pipe, entered where stop_all() finds it."""
    env = {**os.environ, **launch.env_extra}  # the lab's environment, then the command's
    with _starting():
        try:
            proc = subprocess.Popen(
                launch.argv,
                cwd=launch.cwd,
                env=env,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise LabError(f"{label}: command not found: {launch.argv[0]}", fix="run `nox -s doctor`") from exc
        with _DEADLINES_LOCK:
            _RUNNING.add(proc.pid)
            if launch.token is not None:
                _TOKENS[proc.pid] = launch.token
    return proc


def _forget(pid: int) -> None:
    with _DEADLINES_LOCK:
        _RUNNING.discard(pid)
        _TOKENS.pop(pid, None)


def exit_on_signal(signum: int, _frame: object) -> None:
    """The lab's SIGTERM/SIGHUP/SIGINT handler: exit with 128 + signum (a
    KeyboardInterrupt for Ctrl-C), once any command being started is entered
    where stop_all() will find it."""
    exc: BaseException = KeyboardInterrupt() if signum == signal.SIGINT else SystemExit(128 + signum)
    if _MAIN_STARTING.is_set():
        _PENDING_EXIT.append(exc)
        return
    raise exc


def stop_all(grace: float = STOP_GRACE_S) -> list[int]:
    """Stop every command still running; returns their pids.

    SIGTERM to each process group first: a lab run started by another (`lab
    mutants`) then stops its own VMs, which run in sessions of their own and
    would outlive a SIGKILLed parent. SIGKILL to what is left after `grace`."""
    deadline = time.monotonic() + START_WAIT_S
    while _STARTING and time.monotonic() < deadline:  # commands other threads are starting
        time.sleep(0.01)
    with _DEADLINES_LOCK:
        pids = sorted(_RUNNING)
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_group_running(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        _kill_group(pid)
    for name, (argv, env) in list(_CONTAINERS.items()):
        subprocess.run(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        _CONTAINERS.pop(name, None)
    return pids


def _group_running(pgid: int) -> bool:
    """Whether any process of group `pgid` (or, in a container, of its
    command) is alive (zombies do not count: a command interrupted in the
    main thread is never reaped there)."""
    with _DEADLINES_LOCK:
        token = _TOKENS.get(pgid)
    if token is not None and processes_with_token(token):
        return True
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def pid_of(label: str) -> int | None:
    """The pid of the command with a timeout (or an idle timeout) running now under `label`, None if none is."""
    with _DEADLINES_LOCK:
        return next((pid for pid, (_deadline, what) in _DEADLINES.items() if what == label), None)


def reap_overdue(grace: float = 30.0) -> list[str]:
    """Kill the process groups of commands `grace` seconds past their timeout; says which."""
    now = time.monotonic()
    with _DEADLINES_LOCK:
        overdue = [(pid, deadline, label) for pid, (deadline, label) in _DEADLINES.items() if now > deadline + grace]
    for pid, _deadline, _label in overdue:
        _kill_group(pid)
    return [f"{label} (pid {pid}) {now - deadline:.0f} s past its timeout" for pid, deadline, label in overdue]


def survivors(after: float) -> dict[int, str]:
    """Commands still registered `after` seconds past their timeout although
    reap_overdue has been killing them, each with why it is stuck. The
    runner returns within EXIT_WAIT_S of a kill, so this means either a
    process that survives SIGKILL (stuck in the kernel; seen here: a qemu in
    KVM_RUN on a level-1 CPU that never left its level-2 guest) or a
    runner that never came back for a process already gone (its thread
    asleep on a CPU that missed its wakeup, also seen here)."""
    now = time.monotonic()
    with _DEADLINES_LOCK:
        late = [(pid, deadline, label) for pid, (deadline, label) in _DEADLINES.items() if now > deadline + after]
    found = {}
    for pid, deadline, label in late:
        state = state_and_wchan(Path(f"/proc/{pid}"))
        past = f"{now - deadline:.0f} s past its timeout"
        if state is not None and state[0] not in ("Z", "X"):
            found[pid] = f"{label} (pid {pid}, state {state[0]}, wchan {state[1]}) {past}: it survives SIGKILL"
        else:
            found[pid] = f"{label} (pid {pid}, {'a zombie' if state else 'gone'}) {past}: the lab's wait for it never returned"
    return found


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:60] or "cmd"


class Background:
    """A command the lab started and goes on beside (a VM, a policy loader,
    host load); its output goes to its log as it comes, and stays readable
    through `output` and `wait_for`. Runs in a session of its own, so
    stop() and stop_all() end its whole tree."""

    def __init__(self, proc: subprocess.Popen[str], log: Path, label: str, on_line: Callable[[str], None] | None, tee: Path | None) -> None:
        self.proc, self.log, self.label, self.tee = proc, log, label, tee
        self._lines: list[str] = []
        self._lines_lock = threading.Lock()
        self._start = time.monotonic()
        self._on_line = on_line
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._pump, name=f"output of {label}", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("a", errors="replace") as out, contextlib.ExitStack() as stack:
            tee = stack.enter_context(self.tee.open("w", errors="replace")) if self.tee is not None else None
            for text in self.proc.stdout:
                out.write(text)
                out.flush()
                if tee is not None:
                    tee.write(text)
                    tee.flush()
                with self._lines_lock:
                    self._lines.append(text)
                if self._on_line is not None:
                    self._on_line(text.rstrip("\n"))
        self._closed.set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdin(self) -> IO[str] | None:
        return self.proc.stdin

    @property
    def output(self) -> str:
        with self._lines_lock:
            return "".join(self._lines)

    def poll(self) -> int | None:
        return self.proc.poll()

    def seen(self, marker: str, whole_line: bool = False) -> bool:
        """Whether a line so far holds `marker` (is exactly it, with `whole_line`)."""
        with self._lines_lock:
            if whole_line:
                return any(text.strip() == marker for text in self._lines)
            return any(marker in text for text in self._lines)

    def wait_for(self, marker: str, timeout: float, whole_line: bool = False) -> bool:
        """Whether a line holding `marker` arrives within `timeout` s (False at once when the command ended without it)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.seen(marker, whole_line):
                return True
            if self._closed.is_set() or time.monotonic() >= deadline:
                return self.seen(marker, whole_line)
            self._closed.wait(0.1)

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit status, or None if it is still running after `timeout` s."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._finish(rc)
        return rc

    def stop(self, sig: int = signal.SIGTERM, grace: float = 30.0) -> int | None:
        """`sig` to its process group, SIGKILL after `grace` s; the exit status, None if it survives SIGKILL."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, sig)
        rc = self.wait(grace)
        if rc is None:
            _kill_group(self.proc.pid)
            rc = self.wait(grace)
        return rc

    def _finish(self, rc: int) -> None:
        with _DEADLINES_LOCK:
            if self.proc.pid not in _RUNNING:
                return
        _forget(self.proc.pid)
        self._closed.wait(EXIT_WAIT_S)
        with self.log.open("a") as out:
            out.write(f"\n# exit status {rc}, {time.monotonic() - self._start:.1f} s\n")


class _LogSequence:
    """The numbering of one logs/ directory, shared by its runners."""

    def __init__(self, log_dir: Path) -> None:
        # Continue the numbering of a reused directory instead of overwriting it.
        self.count = len(list(log_dir.glob("[0-9][0-9][0-9]-*.log")))
        self.lock = threading.Lock()


class Runner:
    """Runs commands with logging, each in its runtime (this machine or the
    lab's container); one per lab run, owning its logs/ directory."""

    def __init__(self, log_dir: Path, runtime: Runtime | None = None, *, _sequence: _LogSequence | None = None) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.runtime = runtime or NativeRuntime()
        self._seq = _sequence or _LogSequence(log_dir)
        self._found: dict[str, str | None] = {}  # which() in a container runtime
        script = self.log_dir / "commands.sh"
        if not script.exists():
            script.write_text("#!/bin/sh\n# Every command this lab run ran, in order.\n")

    def on_host(self) -> Runner:
        """A runner for commands that must run on this machine whatever the
        runtime (the container engine itself, downloads), in the same logs."""
        if isinstance(self.runtime, NativeRuntime):
            return self
        return Runner(self.log_dir, NativeRuntime(), _sequence=self._seq)

    def start_runtime(self) -> None:
        """Start the runtime's container, if it has one; stop_runtime() or stop_all() removes it."""
        argv = self.runtime.start_argv()
        if argv is None:
            return
        stop = self.runtime.stop_argv() or []
        _CONTAINERS[" ".join(stop)] = (stop, self.runtime.host_env())
        self.on_host().run(argv, "start the lab's container", env_extra=self.runtime.host_env())

    def stop_runtime(self) -> None:
        stop = self.runtime.stop_argv()
        if stop is None:
            return
        self.on_host().run(stop, "remove the lab's container", env_extra=self.runtime.host_env(), check=False)
        _CONTAINERS.pop(" ".join(stop), None)

    def which(self, name: str) -> str | None:
        """Where `name` is in the runtime (its PATH), None if it is not."""
        if isinstance(self.runtime, NativeRuntime):
            return shutil.which(name)
        if name not in self._found:  # an image does not change under a run: ask it once
            out = self.run(["sh", "-c", 'command -v "$1"', "sh", name], f"which {name}", check=False)
            lines = out.output.strip().splitlines()
            self._found[name] = lines[-1] if out.ok and lines and lines[-1].startswith("/") else None
        return self._found[name]

    def exists(self, path: Path) -> bool:
        if isinstance(self.runtime, NativeRuntime):
            return path.exists()
        return self.run(["test", "-e", str(path)], f"test -e {path.name}", check=False).ok

    def readable(self, path: Path) -> Path:
        """The runtime's file `path` where this machine can read it: `path`
        itself natively, else a copy out of the image (kept per image)."""
        if not isinstance(self.runtime, ContainerRuntime):
            return path.resolve()
        dest = self.runtime.files / str(path).lstrip("/")
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
            self.run(["cp", "-L", "--preserve=mode", str(path), str(tmp)], f"copy {path.name} out of the container")
            os.replace(tmp, dest)
        return dest

    def _next_log(self, label: str) -> Path:
        with self._seq.lock:
            self._seq.count += 1
            return self.log_dir / f"{self._seq.count:03d}-{_slug(label)}.log"

    def _announce(self, argv: list[str], label: str, cwd: Path | None, env_extra: Mapping[str, str] | None) -> tuple[Path, str]:
        log = self._next_log(label)
        line = self.runtime.reproducer(argv, cwd, env_extra)
        with (self.log_dir / "commands.sh").open("a") as script:
            script.write(f"\n# {log.name}\n{line}\n")
        return log, line

    def start(
        self,
        cmd: Sequence[str | os.PathLike[str]],
        label: str,
        *,
        cwd: Path | None = None,
        env_extra: Mapping[str, str] | None = None,
        stdin: bool = False,
        on_line: Callable[[str], None] | None = None,
        tee: Path | None = None,
    ) -> Background:
        """Start `cmd` in the background, logged like run(); `stdin=True` gives
        it a pipe to write to; `tee`: a file that gets its output alone too
        (a console that the splat scanners read)."""
        argv = [str(c) for c in cmd]
        log, line = self._announce(argv, label, cwd, env_extra)
        log.write_text(f"# {label} (background)\n# reproduce: {line}\n\n")
        proc = _spawn(self.runtime.launch(argv, cwd, env_extra, stdin=stdin), label, stdin)
        return Background(proc, log, label, on_line, tee)

    def interactive(self, cmd: Sequence[str | os.PathLike[str]], label: str, *, cwd: Path | None = None) -> int:
        """Run `cmd` on the user's terminal (a shell in a VM); logged, its output not captured."""
        argv = [str(c) for c in cmd]
        log, line = self._announce(argv, label, cwd, None)
        log.write_text(f"# {label} (interactive: output on the terminal)\n# reproduce: {line}\n")
        start = time.monotonic()
        launch = self.runtime.launch(argv, cwd, None, stdin=True, tty=True)
        rc = subprocess.call(launch.argv, cwd=launch.cwd, env={**os.environ, **launch.env_extra})
        with log.open("a") as out:
            out.write(f"\n# exit status {rc}, {time.monotonic() - start:.1f} s\n")
        return rc

    def run(
        self,
        cmd: Sequence[str | os.PathLike[str]],
        label: str,
        *,
        cwd: Path | None = None,
        env_extra: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
        on_line: Callable[[str], None] | None = None,
        stdin_text: str | None = None,
        grace_after: Sequence[tuple[str, float]] = (),
        idle_timeout: float | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> Result:
        """Run `cmd`, logging it. `grace_after=[(marker, seconds), ...]`: once a
        line contains a marker, the command has that long to exit before it
        is killed (VMs whose work is done but which do not power off, or
        whose kernel reported it is wedged); a later marker with a shorter
        grace brings the kill forward, never back.
        `idle_timeout`: a command silent that long is killed (after
        `on_idle()`, e.g. to record where it hangs)."""
        argv = [str(c) for c in cmd]
        log, line = self._announce(argv, label, cwd, env_extra)
        start = time.monotonic()
        chunks: list[str] = []
        timed_out = False
        with log.open("w", errors="replace") as out:
            out.write(f"# {label}\n# reproduce: {line}\n\n")
            out.flush()
            try:
                proc = _spawn(self.runtime.launch(argv, cwd, env_extra, stdin=stdin_text is not None), label, stdin_text is not None)
            except LabError:
                out.write(f"# not found: {argv[0]}\n")
                raise
            if stdin_text is not None and proc.stdin is not None:
                proc.stdin.write(stdin_text)
                proc.stdin.close()
            killed_at: list[float] = []

            def _kill(why_timeout: bool) -> None:
                nonlocal timed_out
                timed_out = timed_out or why_timeout
                killed_at.append(time.monotonic())
                _kill_group(proc.pid)

            timer = None
            if timeout is not None:
                timer = threading.Timer(timeout, _kill, (True,))
                timer.daemon = True  # an interrupted lab must not wait for it to exit
                timer.start()
                with _DEADLINES_LOCK:
                    _DEADLINES[proc.pid] = (start + timeout, label)
            # Bounded by its silence alone: its deadline moves with its output,
            # so the watchdog (reap_overdue) and pid_of know it too.
            rolling = idle_timeout if timeout is None else None
            if rolling is not None:
                with _DEADLINES_LOCK:
                    _DEADLINES[proc.pid] = (start + rolling, label)
            # A reader thread, so a command that will not die (or a descendant
            # that keeps the pipe open) cannot block the lab forever.
            lines: queue.Queue[str | None] = queue.Queue()
            assert proc.stdout is not None
            pipe = proc.stdout

            def _pump() -> None:
                for text in pipe:
                    lines.put(text)
                lines.put(None)

            threading.Thread(target=_pump, name=f"output of {label}", daemon=True).start()
            grace_timer: threading.Timer | None = None
            grace_ends: float | None = None
            stuck = ""
            silent = False
            exited_at: float | None = None
            last_output = time.monotonic()
            while True:
                try:
                    text = lines.get(timeout=1.0)
                except queue.Empty:
                    now = time.monotonic()
                    if idle_timeout is not None and not killed_at and now - last_output > idle_timeout:
                        silent = True
                        if on_idle is not None:
                            on_idle()
                        _kill(True)
                        continue
                    if exited_at is None and proc.poll() is not None:
                        exited_at = now
                    waited_from = killed_at[0] if killed_at else exited_at
                    if waited_from is not None and now - waited_from > EXIT_WAIT_S:
                        if proc.poll() is None:
                            stuck = f"still there {EXIT_WAIT_S:.0f} s after SIGKILL ({process_state(proc.pid)})"
                        else:
                            stuck = "ended, but a descendant outside its process group kept its output open"
                        break
                    continue
                if text is None:
                    break
                last_output = time.monotonic()
                if rolling is not None:
                    with _DEADLINES_LOCK:
                        _DEADLINES[proc.pid] = (last_output + rolling, label)
                out.write(text)
                out.flush()  # so `tail -f` on a log follows a long step
                chunks.append(text)
                if on_line is not None:
                    on_line(text.rstrip("\n"))
                hit = next((secs for marker, secs in grace_after if marker in text), None)
                # A later marker may only bring the kill forward.
                if hit is not None and (grace_ends is None or time.monotonic() + hit < grace_ends):
                    if grace_timer is not None:
                        grace_timer.cancel()
                    grace_ends = time.monotonic() + hit
                    grace_timer = threading.Timer(hit, _kill, (False,))
                    grace_timer.daemon = True
                    grace_timer.start()
            if grace_timer is not None:
                grace_timer.cancel()
            if timer is not None:
                timer.cancel()
            if timer is not None or rolling is not None:
                with _DEADLINES_LOCK:
                    _DEADLINES.pop(proc.pid, None)
            try:
                rc = proc.wait(timeout=EXIT_WAIT_S if stuck or killed_at else None)
            except subprocess.TimeoutExpired:
                rc = -signal.SIGKILL
                stuck = stuck or f"did not exit after SIGKILL ({process_state(proc.pid)})"
            _forget(proc.pid)
            if stuck:
                out.write(f"\n# lab: {stuck}\n")
            seconds = time.monotonic() - start
            status = f"timed out after {timeout}s" if timed_out else f"exit status {rc}"
            if silent:
                status = f"killed after {idle_timeout:.0f} s without output"
            if stuck:
                status += f"; {stuck}"
            out.write(f"\n# {status}, {seconds:.1f} s\n")
        result = Result(argv, rc, "".join(chunks), seconds, log, timed_out, stuck, silent)
        if check and not result.ok:
            tail = "".join(chunks[-15:]).rstrip()
            raise LabError(
                f"{label} failed ({status})\n{tail}",
                fix=f"rerun by hand: {line}",
                log=str(log),
            )
        return result
