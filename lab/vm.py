"""Booting level 1 (the host-kernel VM) with virtme-ng, and probing its accelerator."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from lab import accel, ui
from lab import monitor as monitor_lib
from lab.cache import file_lock
from lab.errors import LabError
from lab.paths import REPO
from lab.protocol import LEVEL1_DONE, LEVEL1_READY, PROBE_OK, WEDGED
from lab.runner import Result, Runner

# A level 1 under TCG keeps every CPU of this machine busy: a second one
# beside it (another lab run, whatever its cache) makes both slow enough to
# fail timing checks, so level-1 runs under TCG take turns, machine-wide.
TCG_TURN_LOCK = Path(tempfile.gettempdir()) / "pvsched-lab-level1-tcg.lock"

PROBE_MARK, READY_MARK, DONE_MARK = PROBE_OK, LEVEL1_READY, LEVEL1_DONE


@dataclass
class Level1Settings:
    cpus: int = 2
    memory_mb: int = 3072
    kvm_probe_timeout: float = 60.0
    tcg_probe_timeout: float = 300.0
    run_timeout: float = 1500.0
    # QEMU CPU model of level 1 under TCG: it must offer SVM with nested
    # paging (`max` does). Without 5-level paging: with it, QEMU 7.2's TCG
    # had both levels read zeros through valid per-CPU mappings now and then
    # (`current` = NULL, recursive page faults up to the stack guard page;
    # KASAN wild accesses in early boot), see README.
    tcg_cpu: str = "max,-la57"
    # QEMU's TCG threading for level 1: "multi" (a host thread per vCPU, the
    # default) or "single" (one thread runs every vCPU in turn: no cross-thread
    # interrupt delivery races; here no level-2 guest printed anything under
    # it, README "emulator control").
    tcg_threads: str = "multi"
    # QEMU's translation buffer for level 1 under TCG, in MiB (None: QEMU's
    # default, 1 GiB here). A full buffer is flushed whole; a small one makes
    # those flushes frequent (a test of whether a fault comes with them).
    tcg_tb_size_mib: int | None = None
    # Extra kernel command line for level 1 (e.g. debugging options).
    append: str = ""


# Under TCG the emulated CPU has no invariant TSC, so built-in KVM snapshots
# the early (PIT) TSC calibration as the rate of every new VM, while the
# kernel later refines tsc_khz by up to 1%.  When the two differ by more than
# KVM's 250 ppm tolerance, KVM wants TSC scaling, which TCG's SVM lacks: "user
# requested TSC rate below hardware speed" and a level-2 guest that hangs
# (seen here under load).  Refinement never moves tsc_khz by more than 1%.
TCG_TSC_TOLERANCE_PPM = 10000


# Level 1's kernel saying one of its CPUs is wedged: the run has failed, so
# it gets this long to finish on its own before it is killed (instead of
# the whole run timeout), and the lab first asks QEMU where the CPUs are.
WEDGED_MARKS = ("rcu_sched detected stalls", "rcu: INFO: rcu_preempt detected stalls", "soft lockup", "hard LOCKUP")
# A task blocked for minutes: level 1 may recover, so no kill, but the CPUs
# are dumped (seen: synchronize_srcu() waiting on a CPU that lost a wakeup).
HUNG_TASK_MARK = "blocked for more than"
WEDGED_GRACE_S = 300.0
# Level 1's watchdog saying a killed command survives SIGKILL, or that the
# lab's main thread slept far past any poll (lab.invm.watchdog, WEDGED):
# nothing in level 1 can finish after that.
UNRECOVERABLE_MARK = WEDGED
UNRECOVERABLE_GRACE_S = 20.0
# An oops does not stop level 1, but where its CPUs are right then is worth keeping.
OOPS_MARKS = ("BUG: ", "Oops: ", "general protection fault")
# The lab's runners in level 1 print a heartbeat every minute
# (lab/invm/watchdog.py); a console silent this long means level 1 stopped.
# Seen here under TCG: both CPUs halted for 8 minutes with their timer
# interrupts pending in the APIC (QEMU did not wake them), the run lost.
SILENCE_KILL_S = 300.0


def vng_command(
    vng: str, kernel: Path, mode: str, settings: Level1Settings, exec_cmd: str | None, rwdirs: list[Path], monitor: Path | None = None
) -> list[str]:
    """virtme-ng booting `kernel`; runs `exec_cmd`, or gives a shell when it is None.

    `monitor`: a unix socket for QEMU's monitor (HMP), to read level 1's
    registers when it wedges."""
    cmd = [
        vng, "--run", str(kernel), "--disable-microvm", "--verbose",
        "--cpus", str(settings.cpus), "--memory", f"{settings.memory_mb}M",
        "--append", "panic=-1", "--cwd", str(REPO),
        # The series' host switch (off by default); an unpatched kernel ignores it.
        "--append", "kvm.pvsched=1",
    ]  # fmt: skip
    if mode == "tcg":
        # The emulated CPU must be `max` (SVM with nested paging): virtme-ng
        # 1.35 (trixie) leaves TCG on QEMU's default qemu64, whose SVM lacks
        # NPT, and every level-2 guest then triple-faulted in its BIOS.
        # Level 2 (`-cpu host`) inherits level 1's features, la57 included.
        cmd += ["--disable-kvm", f"--qemu-opts=-cpu {settings.tcg_cpu}"]
        accel_opts = [f"thread={settings.tcg_threads}"] if settings.tcg_threads != "multi" else []
        if settings.tcg_tb_size_mib is not None:
            accel_opts.append(f"tb-size={settings.tcg_tb_size_mib}")
        if accel_opts:
            cmd.append(f"--qemu-opts=-accel tcg,{','.join(accel_opts)}")
        cmd += ["--append", f"kvm.tsc_tolerance_ppm={TCG_TSC_TOLERANCE_PPM}"]
    if settings.append:
        cmd += ["--append", settings.append]
    if monitor is not None:
        cmd.append(f"--qemu-opts=-monitor unix:{monitor},server=on,wait=off")
    for d in rwdirs:
        cmd += ["--rwdir", f"{d}={d}"]  # GUEST=HOST: vng >= 1.35 rejects the one-path form
    return cmd if exec_cmd is None else [*cmd, "--exec", exec_cmd]


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


class Level1:
    def __init__(self, cache: Path, runner: Runner, kernel: Path, kernel_key: str, settings: Level1Settings) -> None:
        self.cache = cache
        self.runner = runner
        self.kernel = kernel
        self.kernel_key = kernel_key
        self.settings = settings

    @functools.cached_property
    def vng(self) -> str:
        """virtme-ng in the runtime; natively the one nox installed beside this Python."""
        return self.runner.which("vng") or str(Path(sys.executable).parent / "vng")

    def _probe_cache(self) -> Path:
        # Valid until the machine reboots or the kernel or QEMU changes.
        qemu = self.runner.which("qemu-system-x86_64") or ""
        # Which QEMU: its file's time here, the image's id in a container.
        runtime = self.runner.runtime
        stamp = runtime.metadata().get("image_id", "") if runtime.kind == "container" else (os.stat(qemu).st_mtime if qemu else 0)
        ident = (
            f"{_boot_id()}|{self.kernel_key}|{qemu}|{stamp}|{self.settings.tcg_cpu}"
            + ("" if self.settings.tcg_threads == "multi" else f"|{self.settings.tcg_threads}")
            + ("" if self.settings.tcg_tb_size_mib is None else f"|tb{self.settings.tcg_tb_size_mib}")
        )
        return self.cache / "probes" / (hashlib.sha256(ident.encode()).hexdigest()[:24] + ".json")

    def probe(self, use_cache: bool = True) -> tuple[str, list[accel.Probe], bool]:
        """(chosen accel, probes, whether it came from the cache)."""
        cached = self._probe_cache()
        if use_cache and cached.exists():
            data = json.loads(cached.read_text())
            return data["accel"], [accel.Probe(**p) for p in data["probes"]], True
        dev = Path("/dev/kvm")
        worth, why = accel.kvm_worth_trying(dev.exists(), os.access(dev, os.R_OK | os.W_OK))
        probes: list[accel.Probe] = []
        modes = ["kvm", "tcg"] if worth else ["tcg"]
        if not worth:
            probes.append(accel.Probe("kvm", False, 0.0, why))
        for mode in modes:
            timeout = accel.probe_timeout(mode, self.settings.kvm_probe_timeout, self.settings.tcg_probe_timeout)
            # A TCG probe is a level 1 like any other: beside another run's,
            # each took both CPUs from the other (a test command's level 1
            # ran 450 s instead of 170 s beside the debug profile's probe).
            with tcg_turn(mode, f"probe level1 {mode}"), ui.activity(f"probing level 1 under {mode} (timeout {timeout:.0f} s)") as progress:
                res = self.runner.run(
                    # Without the user's --level1-append: the probe asks which
                    # accelerator boots this kernel, and its answer is cached.
                    vng_command(self.vng, self.kernel, mode, replace(self.settings, append=""), f"echo {PROBE_MARK}", []),
                    f"probe level1 {mode}",
                    timeout=timeout,
                    check=False,
                    on_line=progress,
                )
            # The marker proves the boot; the exit status may be lost on the way out.
            ok = not res.timed_out and PROBE_MARK in res.output
            reason = "" if ok else (f"timed out after {timeout:.0f} s" if res.timed_out else f"exit status {res.returncode}")
            probes.append(accel.Probe(mode, ok, round(res.seconds, 2), reason))
            if ok:
                break
        chosen = accel.choose(probes)
        if chosen is None:
            raise LabError(
                "level 1 boots under no accelerator: " + "; ".join(f"{p.accel}: {p.reason}" for p in probes),
                fix="read the probe logs; check that qemu-system-x86_64 runs (`nox -s doctor`)",
                log=str(self.runner.log_dir),
            )
        cached.parent.mkdir(parents=True, exist_ok=True)
        # Whole or not at all: a concurrent run may be reading it.
        tmp = cached.with_name(f"{cached.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"accel": chosen, "probes": [p.to_dict() for p in probes]}))
        os.replace(tmp, cached)
        return chosen, probes, False

    def run(
        self, mode: str, exec_cmd: str, rwdirs: list[Path], label: str, silence_timeout: float | None = None
    ) -> tuple[Result, float | None]:
        """Boot level 1 and run `exec_cmd`; returns the result and seconds to the ready mark.

        `silence_timeout`: kill level 1 when its console is silent that long
        (for commands that print a heartbeat), after dumping its CPUs."""
        with tcg_turn(mode, label):
            return self._run(mode, exec_cmd, rwdirs, label, silence_timeout)

    def _run(self, mode: str, exec_cmd: str, rwdirs: list[Path], label: str, silence_timeout: float | None) -> tuple[Result, float | None]:
        start = time.monotonic()
        ready: list[float] = []
        dumped: list[str] = []
        dump_lock = threading.Lock()
        monitor = Path(f"/tmp/pvsched-lab-l1-monitor-{os.getpid()}.sock")  # short: unix socket paths are limited

        def dump(why: str, again: bool = False) -> None:
            """Once per boot, and once more for a wedge or a stall (`again`):
            the CPUs then say why, whatever an earlier oops showed."""
            with dump_lock:
                if len(dumped) > (1 if again else 0):
                    return
                dest = self.runner.log_dir / ("level1-cpus.txt" if not dumped else "level1-cpus-wedged.txt")
                dumped.append(monitor_lib.dump_cpus(monitor, dest, self.kernel.parent / "System.map", self.runner))
            ui.info(f"level 1 {why}; its CPUs: {dumped[-1]} ({dest})")

        def watch(line: str) -> None:
            progress(line)
            if READY_MARK in line and not ready:
                ready.append(time.monotonic() - start)
            if UNRECOVERABLE_MARK in line:
                dump("reports it is wedged (its watchdog: a command or its main thread stuck)", again=True)
            elif any(m in line for m in WEDGED_MARKS):
                dump("reports a stall", again=True)
            elif HUNG_TASK_MARK in line:
                dump("reports a hung task", again=True)
            elif any(m in line for m in OOPS_MARKS):
                dump("reports an oops")

        grace = [(DONE_MARK, 60.0), (UNRECOVERABLE_MARK, UNRECOVERABLE_GRACE_S), *((m, WEDGED_GRACE_S) for m in WEDGED_MARKS)]
        # Just before the timeout kills it, where are level 1's CPUs?
        before_kill = threading.Timer(max(self.settings.run_timeout - 20, 1), dump, ("is about to time out",))
        before_kill.daemon = True  # an interrupted lab must not wait for it to exit
        before_kill.start()
        try:
            with ui.activity(f"{label} (level 1 under {mode})") as progress:
                result = self.runner.run(
                    vng_command(self.vng, self.kernel, mode, self.settings, exec_cmd, rwdirs, monitor),
                    label,
                    timeout=self.settings.run_timeout,
                    check=False,
                    on_line=watch,
                    grace_after=grace,
                    idle_timeout=silence_timeout,
                    on_idle=lambda: dump(f"printed nothing for {silence_timeout:.0f} s"),
                )
        finally:
            before_kill.cancel()
            monitor.unlink(missing_ok=True)
        return result, (round(ready[0], 2) if ready else None)


@contextmanager
def tcg_turn(mode: str, label: str, lock: Path = TCG_TURN_LOCK) -> Iterator[None]:
    """Under TCG, this machine's turn to run a level 1 (TCG_TURN_LOCK); says when it waits."""
    if mode != "tcg":
        yield
        return
    since, waited = time.monotonic(), []

    def waiting() -> None:
        waited.append(True)
        ui.info(f"{label}: another lab run's level 1 runs under TCG on this machine; waiting for it to end ({lock})")

    with file_lock(lock, on_wait=waiting):
        if waited:
            ui.info(f"{label}: waited {time.monotonic() - since:.1f} s for the other run's level 1")
        yield


def python_exec(python: str, module: str, *args: str) -> str:
    """A shell command running a lab module inside level 1 with `python`: the
    runtime's (level 1's root is the runtime's filesystem)."""
    return shlex.join([python, "-m", module, *args])
