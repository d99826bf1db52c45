"""Level 2 from level 1: the one QEMU command line for a guest, a boot the
caller waits for (`boot_guest`), and a guest started in the background
(`Guest`). Stdlib only, like the rest of lab/invm."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab import accel, exit_record
from lab.invm import exit_sample, marks, reset_watch, shutdown_trace
from lab.invm import qmp as qmp_lib
from lab.protocol import GUEST_DONE, GUEST_READY, guest_kernel_log_spans
from lab.runner import Runner, pid_of
from lab.symbols import SymbolMap

READY = GUEST_READY
DONE = GUEST_DONE
PANIC = "Kernel panic"
# A guest under a TCG-emulated level 1 is descheduled for tens of seconds
# at a time (the debug profile's guests reported soft lockups of their
# idle task, "stuck for 25-31 s", while every test passed). The lockup and
# RCU stall detectors get the longer thresholds syzkaller uses for VMs;
# a real lockup is still reported, after 110 s instead of 20.
SLOW_HOST_APPEND = "watchdog_thresh=55 rcupdate.rcu_cpu_stall_timeout=100"


def qemu_command(
    cfg: dict[str, object],
    mode: str,
    extra_append: str = "",
    qmp: Path | None = None,
    reboot: bool = False,
    drives: tuple[Path, ...] = (),
    reset_watch_socket: Path | None = None,
) -> list[str]:
    """QEMU for a level-2 guest; a guest reboot ends QEMU unless `reboot` (the reboot test).
    `drives`: files the guest reads as /dev/vda, /dev/vdb, ... (read-only).
    `reset_watch_socket`: QEMU pauses at a shutdown for lab.invm.reset_watch on that QMP socket."""
    cpus, mem = int(cfg["guest_cpus"]), int(cfg["guest_mem_mb"])  # type: ignore[call-overload]
    append = f"console=ttyS0 loglevel=4 panic=-1 lab.cpus={cpus} lab.mem_mb={mem} {extra_append}".strip()
    cpu = "host" if mode == "kvm" else "max"
    if cfg.get("level1_accel") == "tcg":
        append += f" {SLOW_HOST_APPEND}"
    if cfg.get("guest_append"):
        append += f" {cfg['guest_append']}"  # last, so the user's word wins
    if mode == "kvm" and cfg.get("level1_accel") == "tcg":
        # KVM on TCG reports XSAVE sizes the features do not match ("XSAVE
        # consistency problem" WARNING in the guest): run the guest without XSAVE.
        cpu = "host,-xsave"
    cmd = [
        str(cfg["qemu"]), "-accel", mode, "-cpu", cpu, "-smp", str(cpus), "-m", f"{mem}M",
        "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
        # vCPU threads named "CPU <n>/KVM": ps shows them, the control's base-flip cell finds them.
        "-name", "level2,debug-threads=on",
        *([] if reboot else ["-no-reboot"]),
        "-kernel", str(cfg["guest_kernel"]), "-initrd", str(cfg["guest_initramfs"]), "-append", append,
    ]  # fmt: skip
    for drive in drives:
        cmd += ["-drive", f"file={drive},if=virtio,format=raw,readonly=on"]
    # Without one of the lab's own, a diagnostic socket: a stalled guest's registers (lab.invm.qmp).
    cmd += ["-qmp", f"unix:{qmp or qmp_lib.diagnostic_socket()},server=on,wait=off"]
    if reset_watch_socket is not None:
        cmd += [*reset_watch.QEMU_ARGS, "-qmp", f"unix:{reset_watch_socket},server=on,wait=off"]
    return cmd


_NOT_OK = re.compile(r"^not ok \d+ (\S+)")


def boot_guest(
    runner: Runner,
    cfg: dict[str, object],
    mode: str,
    out: Path,
    *,
    label: str = "",
    extra_append: str = "",
    qmp: Path | None = None,
    watch: Callable[[str], None] | None = None,
    prefix: list[str] | None = None,
    until_silent: bool = False,
    walk_resets: bool = False,
) -> tuple[accel.Probe, str]:
    """One level-2 boot; the probe is 'ok' when the guest reached its tests and finished.

    No retry: a guest that hangs or resets fails its boot, and whether the
    emulator is to blame is for the host to prove (lab.attempts). Its
    console is kept as level2-console-<label>.log, its failed tests are
    marked in the kernel log as they print.
    `until_silent`: the boot's timeout bounds the guest's silence, not its
    whole run: a guest that prints progress as it goes (rounds whose count
    and speed vary with the profile) runs as long as it makes any.
    `walk_resets`: a triple fault's page walk is read from the paused guest
    (lab.invm.reset_watch) where level 1 traces shutdown exits."""
    start = time.monotonic()
    ready_at: list[float] = []

    def on_line(line: str) -> None:
        if READY in line:
            ready_at.append(time.monotonic() - start)
        if m := _NOT_OK.match(line.strip()):
            marks.failed("level2", m[1])
        if watch is not None:
            watch(line)

    name = label or mode
    console_log = out / f"level2-console-{name}.log"
    timeout = accel.probe_timeout(mode, float(cfg["kvm_timeout"]), float(cfg["tcg_timeout"]))  # type: ignore[arg-type]
    # Level 1 only (its config says so): armed elsewhere it would trace the machine the lab runs on.
    trace = arm_shutdown_trace(runner) if mode == "kvm" and cfg.get("trace_shutdowns") else None
    label = f"level2 boot ({name})"
    reset_walker = None
    if walk_resets and trace is not None:
        sock = Path(f"/tmp/lab-l2-watch-{os.getpid()}-{name}.sock")
        sock.unlink(missing_ok=True)
        reset_walker = reset_watch.ResetWatch(sock, trace, out / f"level2-walk-{name}.txt", lambda: _kill(label))
    cmd = [*(prefix or []), *qemu_command(cfg, mode, extra_append, qmp, reset_watch_socket=reset_walker.sock if reset_walker else None)]
    marks.level2_begins(console_log.name)
    if reset_walker is not None:
        reset_walker.start()
    stuck: list[str] = []  # what KVM saw the guest do just before its timeout
    record = out / exit_record.record_name(name)  # the same, for the host's emulator signs
    sampler = None
    if until_silent:
        # Sampled when the silence is up, before the kill.
        on_idle = (lambda: _sample_exits(trace, label, cfg, stuck, record)) if trace is not None else None
        result = runner.run(cmd, label, check=False, on_line=on_line, idle_timeout=timeout, on_idle=on_idle)
    else:
        if trace is not None:
            sampler = threading.Timer(max(timeout - exit_sample.SAMPLE_S - 8, 1), _sample_exits, (trace, label, cfg, stuck, record))
            sampler.daemon = True
            sampler.start()
        result = runner.run(cmd, label, timeout=timeout, check=False, on_line=on_line)
    if sampler is not None:
        sampler.cancel()
        sampler.join(exit_sample.SAMPLE_S + 5)
    console = result.output
    console_log.write_text(console)
    if result.silent:
        reason = f"silent for {timeout:.0f} s" + (f"; {stuck[0]}" if stuck else "")
    elif result.timed_out:
        reason = f"timed out after {timeout:.0f} s" + (f"; {stuck[0]}" if stuck else "")
    elif PANIC in console:
        reason = "guest kernel panicked: " + next(ln[ln.index(PANIC) :].strip() for ln in console.splitlines() if PANIC in ln)
    elif DONE not in console:
        walked = reset_walker.walked() if reset_walker is not None else ""
        reason = f"guest did not finish (qemu exit status {result.returncode}; {shutdown_witness(trace, cfg)}{walked})"
    else:
        reason = ""
    if reason:
        reason += console_ref(console_log)
    seconds = ready_at[-1] if ready_at else result.seconds
    return accel.Probe(mode, not reason, round(seconds, 2), reason), console


def _kill(label: str) -> None:
    """SIGKILL to the running command `label` (a guest its reset watch lost)."""
    pid = pid_of(label)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


_said_no_state: list[str] = []  # once per level-1 boot


def arm_shutdown_trace(runner: Runner) -> Path | None:
    """KVM's trace of shutdown exits, armed for this boot (None if level 1 cannot trace)."""
    try:
        base = shutdown_trace.tracefs(runner)
        if base is not None and (missing := shutdown_trace.arm(base)) and not _said_no_state:
            _said_no_state.append(missing)
            print(f"level2: no guest state at shutdown exits: {missing}", flush=True)
        return base
    except OSError as exc:
        print(f"level2: no KVM shutdown trace: {exc}", flush=True)
        return None


def _guest_symbols(cfg: dict[str, object]) -> SymbolMap | None:
    system_map = Path(str(cfg["guest_kernel"])).parent / "System.map"
    return SymbolMap(system_map) if system_map.exists() else None


def _sample_exits(trace: Path, label: str, cfg: dict[str, object], said: list[str], record: Path) -> None:
    """Record what the guest's vCPUs do in KVM, just before its timeout (exit_sample)."""
    pid = pid_of(label)
    if pid is not None:
        said.append(_exits_of(trace, pid, cfg, record))


def _exits_of(trace: Path, pid: int, cfg: dict[str, object], record: Path) -> str:
    try:
        found, seconds = exit_sample.sample(trace, pid, int(cfg["guest_cpus"]))  # type: ignore[call-overload]
    except OSError as exc:
        return f"KVM's exits not sampled: {exc}"
    exit_record.write_record(record, found, seconds)
    return exit_sample.verdict(found, seconds, _guest_symbols(cfg)) + _registers_of(pid, exit_record.registers_path(record))


def _registers_of(pid: int, path: Path) -> str:
    """'; registers: ...' of QEMU `pid`'s vCPUs, the whole dump kept in `path`; '' if QEMU does not answer."""
    sock = qmp_lib.socket_of(pid)
    if sock is None or not sock.exists():
        return ""
    try:
        dump = qmp_lib.registers(sock)
    except (OSError, ValueError) as exc:
        return f"; registers not read: {exc}"
    path.write_text(dump)
    return f"; registers: {qmp_lib.summary(dump)}"


def sample_exits(runner: Runner, pid: int, cfg: dict[str, object], record: Path) -> str:
    """What a running guest's vCPUs do in KVM (level 1 only), '' where level 1
    cannot trace; kept in `record` too (lab.exit_record)."""
    if not cfg.get("trace_shutdowns"):
        return ""
    trace = shutdown_trace.tracefs(runner)
    return _exits_of(trace, pid, cfg, record) if trace is not None else ""


def shutdown_witness(trace: Path | None, cfg: dict[str, object]) -> str:
    """Whether KVM saw the guest triple-fault, and where, for a guest that ended early."""
    if trace is None:
        return "no KVM trace in level 1"
    try:
        exits = shutdown_trace.collect(trace)
    except OSError as exc:
        return f"KVM trace unreadable: {exc}"
    return shutdown_trace.verdict(exits, _guest_symbols(cfg))


def console_ref(console_log: Path) -> str:
    """` (console PATH)` after a guest's failure: where the host reads its signs (lab.emulator_faults)."""
    return f" (console {console_log})"


def guest_dmesg(console: str) -> str:
    """The guest's kernel logs: its dumps, or what it printed if it died first (lab.protocol)."""
    lines = console.splitlines()
    return "".join("\n".join(lines[start:end]) + "\n" for start, end in guest_kernel_log_spans(lines))


class Guest:
    """A level-2 guest started in the background, with its console watched."""

    def __init__(self, runner: Runner, cfg: dict[str, Any], out: Path, label: str, append: str, reset_trace: Path | None = None) -> None:
        """`reset_trace`: the armed shutdown trace; with one, a triple fault's
        page walk is read from the paused guest (lab.invm.reset_watch)."""
        self.qmp = Path(f"/tmp/lab-{label}.sock")
        self.qmp.unlink(missing_ok=True)
        self.log = out / f"level2-console-{label}.log"
        marks.level2_begins(self.log.name)
        self.trace = reset_trace
        self.watch: reset_watch.ResetWatch | None = None
        watch_socket = None
        if reset_trace is not None:
            watch_socket = Path(f"/tmp/lab-{label}-watch.sock")
            watch_socket.unlink(missing_ok=True)
            self.watch = reset_watch.ResetWatch(watch_socket, reset_trace, out / f"level2-walk-{label}.txt", self._kill)
        self.cmd = qemu_command(cfg, "kvm", append, self.qmp, reset_watch_socket=watch_socket)
        self.proc = runner.start(self.cmd, f"level2 {label}", tee=self.log)
        if self.watch is not None:
            self.watch.start()

    def wait_for(self, marker: str, timeout: float) -> bool:
        return self.proc.wait_for(marker, timeout)

    def end(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Stop QEMU (SIGKILL after `timeout` s); None if it survives that too."""
        if self.watch is not None and not self.watch.is_alive() and self.proc.poll() is None:
            sig = signal.SIGKILL  # QEMU pauses at a shutdown, and nothing is left to quit it
        code = self.proc.stop(sig, grace=timeout)
        if self.watch is not None:
            self.watch.join(5)
        return code

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.stop(signal.SIGKILL, grace=5)

    def was_reset(self) -> bool:
        """Whether the guest reset itself (a triple fault); QEMU has ended when it did."""
        if self.watch is None or not self.watch.reset.is_set():
            return False
        self.watch.join(10)
        if self.proc.poll() is None:
            self.end(signal.SIGKILL)
        return True

    def reset_walk(self) -> str:
        """'; its page walk: ...' for a guest that triple-faulted and was walked, else ''."""
        if self.watch is None or self.proc.poll() is None:
            return ""
        return self.watch.walked() or (f"; {self.watch.error}" if self.watch.error else "")

    @property
    def console(self) -> str:
        return self.proc.output
