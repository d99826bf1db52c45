"""The host side of the pvsched functional tests, run inside level 1.

Stdlib only. While the guest runs its phases (announced on its console as
`LAB-PHASE <name>`), this module watches the host: the BPF policy's per-vCPU
statistics, the vCPU threads' scheduling policy (sampled from /proc), and
KVM's own view in debugfs. After the guest is gone it turns what it saw into
test cases.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.invm import qmp
from lab.invm.cpu_hog import RtHog
from lab.invm.rt_flip import Flip, RtFlip
from lab.invm.vcpu_sampler import SAMPLER_PRIORITY as OBSERVER_PRIORITY
from lab.invm.vcpu_sampler import thread_policy
from lab.ktap import Case
from lab.protocol import GUEST_PHASE, GUEST_READY, SHIPPED_CAP_US
from lab.runner import Background, Runner

KVM_DEBUGFS = Path("/sys/kernel/debug/kvm_pvsched/vcpus")
KVM_PARAMS = Path("/sys/module/kvm/parameters")
SCHED_OTHER, SCHED_FIFO = 0, 1
BOOST_PRIORITY, HINT_PRIORITY = 10, 1  # the boost policy's defaults (bpf/pvsched_boost.bpf.c)
GUEST_RT_PRIORITY = 50  # the guest's RT task (rtspin 50 in guest_init.sh)
UNBOOST_MIN_SAMPLES = 3
HOOKS = ("vmenter", "vmexit", "halt", "intr_inj")  # the policy's per-event counts (bpf/pvsched_stats.h)
# The rt-shared phase tests the period's rollover under a boost with a cap
# of its own: a host RT task leaves vCPU 1 about 10 % of each period, which
# must stay under the budget, its own and the VM's. Its slice is lifted
# beyond any CPU time the phase can give: a 1 ms slice ends every boost
# within a period, and the period then rolls at the slice's end, never under
# a boost (mutant period-rolls-only-on-boost survived the slice,
# mutants-20261206T030601Z); a slice of one period was reached by a boost
# held through 13 periods under the debug profile (run 20261206T104612Z-27d0).
# The other capped phases run at KVM's shipped cap.
SHARED_BUDGET_US, SHARED_PERIOD_US, SHARED_VM_BUDGET_US = 20_000, 100_000, 40_000
SHARED_SLICE_US = 60_000_000  # a minute of CPU: more than the whole phase's wall time
# The tests of other things under a cap of their own (PI boosts, teardown)
# hold a VM to its vCPUs' budgets only: the VM budget lifted to this many vCPUs' worth.
UNBOUND_VM_VCPUS = 64
Rows = dict[str, dict[str, str]]  # KVM's debugfs rows by thread id
# What the admin phases set on vCPU 1's thread: a nice value, and an RT priority above any boost.
ADMIN_NICE, ADMIN_RT_PRIORITY = 5, 60
# The admin-flip phase: an admin flips vCPU 1's thread between SCHED_FIFO 60
# and SCHED_OTHER every millisecond or so while the guest's RT tasks ask for
# boosts, so that KVM reads the thread's scheduling while it changes (a torn
# policy/priority pair is one the scheduler refuses to restore). The flipper
# runs above the admin's priority.
ADMIN_FLIP_HOLD_S, ADMIN_FLIP_GAP_S, ADMIN_FLIPPER_PRIORITY = 0.001, 0.001, 70
# It must have flipped the thread this often, and KVM must have decided on
# it (boosted or kept the admin's FIFO) this often, for the phase to have
# tested anything: the guest's 40 RT tasks ask for a boost each.
ADMIN_FLIP_MIN_FLIPS, ADMIN_FLIP_MIN_DECISIONS = 100, 20
# The phases whose verdicts judge the cap (the guest's phase line -> its
# end), and those among them that set their own: rt-shared all of it;
# rt-long and dodge lift the VM's budget only, which by default equals one
# vCPU's and would stop a lone busy vCPU first, so that the vCPU's own
# budget is what stops it (mutants cap-budget-is-the-period and
# reregister-refills-budget survived the VM's budget).
# rt and hints lift the cap whole (budget = period): they judge the boost
# by sampling the vCPU threads' policies, and the shipped cap's 50 ms per
# second shows a boost in 1 sample of 20 (the RT phase's 30 samples caught
# none in a mutant run of mutants-20261203T142705Z; hints: run
# 20261203T141159Z-3930).
# rt-whole runs the rt-long spin again with the slice lifted to the period,
# so that no slice ends a boost and only the cap timer's throttle at the
# budget can (mutant cap-never-throttles survived the slice: every boost
# ended at 5 ms and the next was refused at the budget, mutants-20261204T164808Z).
CAP_PHASES = {"rt": "rt-done", "hostile": "hostile-done", "hints": "hints-done", "dodge": "dodge-done",
              "rt-long": "rt-long-done", "rt-whole": "rt-whole-done", "rt-shared": "rt-shared-done"}  # fmt: skip
_VCPU_BUDGET_ONLY = (SHIPPED_CAP_US["budget"], SHIPPED_CAP_US["period"], SHIPPED_CAP_US["budget"] * UNBOUND_VM_VCPUS)
_VCPU_BUDGET_NO_SLICE = (*_VCPU_BUDGET_ONLY, SHIPPED_CAP_US["period"])
_UNCAPPED = (SHIPPED_CAP_US["period"], SHIPPED_CAP_US["period"], SHIPPED_CAP_US["period"] * UNBOUND_VM_VCPUS)
OWN_CAP_PHASES = {
    "rt": _UNCAPPED,
    "rt-shared": (SHARED_BUDGET_US, SHARED_PERIOD_US, SHARED_VM_BUDGET_US, SHARED_SLICE_US),
    "rt-long": _VCPU_BUDGET_ONLY,
    "rt-whole": _VCPU_BUDGET_NO_SLICE,
    "dodge": _VCPU_BUDGET_ONLY,
    "hints": _UNCAPPED,
}
# The dodge phase: the share of samples with a vCPU thread boosted may exceed
# budget/period (0.2: wall time boosted exceeds CPU time while preempted) but
# not approach 1, which is what registering again to leave a throttle gives.
DODGE_MAX_FIFO_SHARE, DODGE_MIN_SAMPLES = 0.5, 5
# The host half changes with boosts, unboosts and throttles (about a tenth of
# the events in a functional run); written at every event it would be all.
HOST_WRITES_MAX_SHARE = 0.25
# The rt-shared phase: a host RT task above any boost holds vCPU 1's CPU
# this much of every 100 ms, leaving its boosted thread under the test
# budget (20 ms) in every period while the boost lasts.
SHARED_HOG_PRIORITY, SHARED_HOG_BUSY_S, SHARED_HOG_IDLE_S = 90, 0.09, 0.008
# The cs-<kind> phases: the guest driver's cs_probe runs this many sections
# of one kind on vCPU 1 (CS_PROBE_SECTIONS in guest_init.sh), each taking
# this many VM exits inside (CS_PROBE_EXITS in guest/pvsched_guest.c).
CS_PROBE_SECTIONS, CS_PROBE_EXITS = 100, 50
# kind -> (its check, the statistic of events that saw its bit)
CS_PROBE_KINDS = {
    "timer": ("pvsched_host_sees_hardirq_in_timer", "hardirq_seen"),
    "ipi": ("pvsched_host_sees_hardirq_in_ipi", "hardirq_seen"),
    "nmi": ("pvsched_host_sees_nmi", "nmi_seen"),
    "preempt": ("pvsched_host_sees_preempt_disabled", "preempt_seen"),
}
# The rt-long spin (an RT task in user space on vCPU 1 for 1.5 s) takes
# exits at the guest's ticks, none in a preempt-off section: a PREEMPT_DISABLED
# bit that does not clear shows at nearly every one of its events.
PREEMPT_MAX_SHARE_IN_USER, PREEMPT_MIN_EVENTS = 0.25, 50
EVENT_STATS = ("vmenter", "vmexit", "halt", "intr_inj")
# KVM ends a boost at its slice (kvm.pvsched_slice_us, 1 ms): no boost of
# the rt-long spin may come near the budget (50 ms), which one unbroken
# boost used up before. Half of it leaves room for the cap timer's lateness
# under emulation and still fails a boost that runs to the budget.
LONGEST_BOOST_MAX_BUDGET_SHARE = 0.5


SAMPLE_INTERVAL = 0.05
UNBOOST_SETTLE_S = 0.3  # how long an unboost may take to show
UNBOOST_WINDOW_S = 0.5  # then at least one sample in this long must show it
DETACH_WAIT_S = 2.5  # for a boost to detach under: the dodge phase's throttle lasts up to a 1 s period


def observe_above_boosts() -> None:
    """Run the calling thread at SCHED_FIFO above boosts; children start normal."""
    policy = os.SCHED_FIFO | os.SCHED_RESET_ON_FORK
    os.sched_setscheduler(0, policy, os.sched_param(OBSERVER_PRIORITY))


def qmp_vcpu_threads(sock_path: Path, timeout: float = 10.0) -> dict[int, int]:
    """cpu-index -> host thread id, from QEMU's QMP `query-cpus-fast`."""
    return {int(c["cpu-index"]): int(c["thread-id"]) for c in qmp.execute(sock_path, "query-cpus-fast", timeout=timeout)}


def stress_ng_command(*args: str) -> list[str]:
    """stress-ng ARGS, its temporary files in /tmp (see start_load)."""
    return ["stress-ng", "--temp-path", "/tmp", *args]


def start_load(runner: Runner, *args: str, settle: float = 0.5) -> Background:
    """stress-ng ARGS as host load; raises if it does not keep running.

    stress-ng refuses to start in a directory it cannot write (level 1's
    working directory is the read-only repo) and says so only on its output:
    a silently missing load once made "loaded" runs equal idle ones.
    """
    proc = runner.start(stress_ng_command(*args), "host load", cwd=Path("/tmp"))
    time.sleep(settle)
    if (rc := proc.poll()) is not None:
        proc.wait(5)
        raise RuntimeError(f"stress-ng {' '.join(args)} exited {rc}: {proc.output.strip()[-300:]}")
    return proc


def kernel_stack(pid: int) -> str:
    """Where a task sleeps in the kernel: its state, wchan and stack (root)."""
    base = Path(f"/proc/{pid}")
    parts = []
    for name in ("stat", "wchan", "stack"):
        try:
            text = (base / name).read_text().strip()
        except OSError as exc:
            parts.append(f"{name} ({exc.strerror})")
            continue
        if name == "stat":
            text = "state " + text.rsplit(")", 1)[-1].split()[0]
        parts.append(text.replace("\n", " | "))
    return "; ".join(parts)


class DebugfsUnreadable(OSError):
    """KVM's pvsched debugfs could not be read: a check that needs it has no data, and fails."""


def read_kvm_vcpus() -> list[dict[str, str]]:
    """KVM's registered vCPUs (/sys/kernel/debug/kvm_pvsched/vcpus), one dict per row."""
    try:
        lines = KVM_DEBUGFS.read_text().splitlines()
    except OSError as exc:
        raise DebugfsUnreadable(f"cannot read {KVM_DEBUGFS}: {exc.strerror or exc}") from exc
    if not lines or not lines[0].startswith("tid "):
        raise DebugfsUnreadable(f"{KVM_DEBUGFS} has no header line: {lines[:1]}")
    header = lines[0].split()
    return [dict(zip(header, line.split(), strict=False)) for line in lines[1:]]


def set_kvm_param(name: str, value: int) -> None:
    (KVM_PARAMS / name).write_text(str(value))


def read_cap() -> tuple[int, int]:
    """KVM's boost cap: (budget, period) in microseconds."""
    return int((KVM_PARAMS / "pvsched_budget_us").read_text()), int((KVM_PARAMS / "pvsched_period_us").read_text())


def read_slice() -> int:
    """The longest CPU time one boost runs before KVM ends it, in microseconds."""
    return int((KVM_PARAMS / "pvsched_slice_us").read_text())


def read_vm_budget() -> int:
    """KVM's budget all vCPUs of one VM share per period, in microseconds."""
    return int((KVM_PARAMS / "pvsched_vm_budget_us").read_text())


@dataclass(frozen=True)
class Cap:
    """KVM's boost cap in microseconds: a vCPU's budget, the period, the VM's budget, one boost's slice."""

    budget_us: int
    period_us: int
    vm_budget_us: int
    slice_us: int = SHIPPED_CAP_US["slice"]

    @classmethod
    def read(cls) -> Cap:
        return cls(*read_cap(), read_vm_budget(), read_slice())

    @classmethod
    def shipped(cls) -> Cap:
        return cls(SHIPPED_CAP_US["budget"], SHIPPED_CAP_US["period"], SHIPPED_CAP_US["vm_budget"], SHIPPED_CAP_US["slice"])

    def is_shipped(self) -> bool:
        return self == Cap.shipped()

    def apply(self) -> None:
        """Make this KVM's cap (budget <= period after each write)."""
        set_cap(self.budget_us, self.period_us)
        set_kvm_param("pvsched_vm_budget_us", self.vm_budget_us)
        set_kvm_param("pvsched_slice_us", self.slice_us)

    def allowed_s(self, seconds: float, vm: bool = False) -> float:
        """The boosted CPU time the cap allows over `seconds` (the periods it touches)."""
        return (seconds / (self.period_us / 1e6) + 1) * (self.vm_budget_us if vm else self.budget_us) / 1e6


def set_cap(budget_us: int, period_us: int) -> None:
    """Set KVM's cap in the order that keeps budget <= period after each write (KVM refuses otherwise)."""
    _, current_period = read_cap()
    if budget_us > current_period:
        set_kvm_param("pvsched_period_us", period_us)
        set_kvm_param("pvsched_budget_us", budget_us)
    else:
        set_kvm_param("pvsched_budget_us", budget_us)
        set_kvm_param("pvsched_period_us", period_us)


@dataclass
class Sample:
    t: float
    phase: str
    policies: dict[int, int | None]
    priorities: dict[int, int | None] = field(default_factory=dict)

    def fifo_priorities(self) -> set[int]:
        return {p for t, p in self.priorities.items() if self.policies.get(t) == SCHED_FIFO and p}


def _memory_dir() -> Path:
    """A directory in memory: /dev/shm when mounted, else /tmp."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path("/tmp")


@dataclass
class PolicyRun:
    """One loader process attaching a pvsched BPF policy.

    The loader rewrites its statistics file ten times a second; it writes
    to `live`, in memory, and `stop()` copies it to `stats`. Written to the
    results directory (9p to the host, through emulated virtio), those
    rewrites cost the host's other tasks ~20 % of their progress, which the
    stress suite's hostile part charged to the policy (docs/pvsched.md).
    """

    runner: Runner
    loader: str
    stats: Path
    proc: Background | None = None
    stopped_at: float | None = None
    live: Path | None = None  # while the loader runs

    def start(self, timeout: float = 60.0) -> str:
        self.live = Path(tempfile.mkdtemp(prefix="pvsched-policy-", dir=_memory_dir())) / self.stats.name
        self.proc = self.runner.start([self.loader, "-o", str(self.live), "-i", "100"], f"policy {Path(self.loader).name}")
        # The runner reads the loader's output for its whole life: the
        # deadline holds even if it prints nothing, and its pipe never fills.
        if self.proc.wait_for("attached", timeout, whole_line=True):
            return ""
        self.proc.stop(signal.SIGKILL)
        return self.proc.output[-500:] or f"loader printed nothing in {timeout:.0f} s"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # A loader that will not stop is reported through the checks
            # (detach restores, scx unloads), not a traceback.
            if self.proc.stop(signal.SIGTERM, grace=30) is None:
                print(f"pvsched: loader {self.proc.pid} survives SIGKILL: {kernel_stack(self.proc.pid)}", flush=True)
            self.stopped_at = time.monotonic()
        if self.live is not None:
            if self.live.exists():
                shutil.copyfile(self.live, self.stats)
            shutil.rmtree(self.live.parent, ignore_errors=True)
            self.live = None

    def vcpus(self) -> list[dict[str, int]]:
        try:
            data: dict[str, list[dict[str, int]]] = json.loads((self.live or self.stats).read_text())
        except (OSError, ValueError):
            return []
        return data["vcpus"]


def case_under_test_cap(
    name: str,
    runner: Runner,
    loader: str,
    stats: Path,
    cap_us: tuple[int, int],
    body: Callable[[], tuple[str, str]],
    errors: tuple[type[Exception], ...] = (OSError,),
) -> Case:
    """`body`'s (status, detail) as the level-1 case `name`, run with the boost
    policy attached and KVM's cap at `cap_us` (budget, period); both undone
    after. The VM's budget is lifted meanwhile (UNBOUND_VM_VCPUS), so each vCPU
    meets its own. A cap that cannot be read, a policy that does not attach, or one of
    `errors` (OSError includes DebugfsUnreadable) fails the case."""
    try:
        saved = Cap.read()
    except (OSError, ValueError) as exc:
        return Case(name, "level1", "failed", f"cannot read KVM's cap: {exc}")
    policy = PolicyRun(runner, loader, stats)
    if err := policy.start():
        return Case(name, "level1", "failed", f"policy did not attach: {err}")
    try:
        Cap(*cap_us, cap_us[0] * UNBOUND_VM_VCPUS).apply()
        return Case(name, "level1", *body())
    except errors as exc:
        return Case(name, "level1", "failed", str(exc))
    finally:
        saved.apply()
        policy.stop()


@dataclass
class PvschedObserver:
    """Reacts to guest phases and samples the host while the guest runs."""

    policy: PolicyRun
    qmp: Path
    threads: dict[int, int] = field(default_factory=dict)
    phase_times: dict[str, float] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    snapshots: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    rt_seen_after: float | None = None
    # (time, the policy's per-vCPU statistics) of every sample that had them.
    policy_samples: list[tuple[float, list[dict[str, int]]]] = field(default_factory=list)
    rt_priorities: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    max_sample_gap: float = 0.0
    _sampler: Background | None = None
    _sample_file: Path = Path("/tmp/lab-vcpu-samples.jsonl")
    _saved_cap: Cap | None = None
    pinned_cpu: int | None = None  # where vCPU 0's thread was moved in the malformed phase
    boot_cap: Cap | None = None  # KVM's cap when the guest was ready, before any phase changed it
    caps: dict[str, Cap] = field(default_factory=dict)  # the cap in effect, per capped phase
    cap_at: dict[str, float] = field(default_factory=dict)  # when that cap was read (after any change), per phase
    admin: dict[str, object] = field(default_factory=dict)  # what the admin phases set and read
    _saved_affinity: set[int] = field(default_factory=set)
    _hog: RtHog | None = None
    _vcpu1_affinity: set[int] = field(default_factory=set)
    # Whether a vCPU thread was SCHED_FIFO when the policy detached: without
    # it the detach restored nothing and its check tested nothing.
    boosted_at_detach: bool | None = None
    _detacher: threading.Thread | None = None
    _admin_flipper: RtFlip | None = None
    admin_flips: int | None = None  # how often the admin-flip phase made vCPU 1 SCHED_FIFO
    # The policy's statistics of vCPU 1 0.3 s after a guest task spinning there became SCHED_FIFO 50:
    # by its own call (rt-self), or by a call from vCPU 0 (rt-other).
    rt_self_seen: dict[str, int] | None = None
    rt_other_seen: dict[str, int] | None = None

    def on_line(self, line: str) -> None:
        if GUEST_READY in line and self.boot_cap is None:
            try:
                self.boot_cap = Cap.read()
            except OSError as exc:
                self.errors.append(f"KVM's cap at guest ready: {exc}")
        if GUEST_READY in line and not self.threads:
            # Ask QMP now, while the guest idles: during the RT phase QEMU's
            # main loop (a normal thread) starves behind boosted vCPU threads,
            # and one query there held this reader up until the guest's last
            # phase (seen here under TCG).
            try:
                self._learn_threads()
            except Exception as exc:  # noqa: BLE001 - report, never kill the boot
                self.errors.append(f"vCPU threads at guest ready: {exc}")
            return
        if GUEST_PHASE not in line:
            return
        name = line.split(GUEST_PHASE, 1)[1].split()[0]
        self.phase_times[name] = time.monotonic()
        try:
            self.snapshots[name] = read_kvm_vcpus()
        except DebugfsUnreadable as exc:
            self.errors.append(f"phase {name}: {exc}")
        try:
            self._enter(name)
        except Exception as exc:  # noqa: BLE001 - report, never kill the boot
            self.errors.append(f"phase {name}: {exc}")

    def _enter(self, name: str) -> None:
        if name == "rt" and not self.threads:
            self._learn_threads()
        if name in CAP_PHASES:
            if name in OWN_CAP_PHASES:
                self._saved_cap = Cap.read()
                Cap(*OWN_CAP_PHASES[name]).apply()
            self.caps[name] = Cap.read()
            self.cap_at[name] = time.monotonic()
        elif name in CAP_PHASES.values() and self._saved_cap is not None:
            self._end_sharing()
            self._restore_cap()
        elif name == "admin-nice":
            self._admin_nice()
        elif name == "admin-fifo":
            self._admin_fifo()
        elif name == "admin-done":
            self._admin_done()
        elif name == "admin-hold":
            self._admin_hold()
        elif name == "admin-release":
            self._admin_release()
        elif name == "admin-resumed":
            self.admin["wanted_at_resumed"] = self._wanted(1)
        elif name == "admin-release-done":
            self._restore_cap()
        elif name == "rt-self-seen":
            self.rt_self_seen = self._vcpu_stats(1)
        elif name == "rt-other-seen":
            self.rt_other_seen = self._vcpu_stats(1)
        elif name == "admin-flip":
            self._start_admin_flips()
        elif name == "admin-flip-done":
            self._stop_admin_flips()
        elif name == "rt-shared-spin":
            self._share_vcpu1_cpu()
        elif name == "malformed":
            self._move_vcpu0()
        elif name == "malformed-done":
            self._release_vcpu0()
        elif name == "detach":
            # Uncapped until detach-done: a boost the detach leaks must not be
            # ended by a throttle before the samples see it (the shipped cap
            # throttles within 50 ms of CPU time).
            try:
                self._uncap()
            except OSError as exc:
                self.errors.append(f"phase detach: {exc}")
            # Off this reader's thread: it waits for a boost to detach under.
            self._detacher = threading.Thread(target=self._detach_when_boosted, name="detach", daemon=True)
            self._detacher.start()
        elif name == "detach-done":
            self._restore_cap()

    def _detach_when_boosted(self, wait_s: float = DETACH_WAIT_S) -> None:
        """Detach the policy once a vCPU thread is boosted (the guest's RT task
        asks for it; a throttle left by the phase before may hold it back up
        to a period), or after `wait_s` without one."""
        deadline = time.monotonic() + wait_s
        while not (boosted := any(thread_policy(t) == SCHED_FIFO for t in self.threads.values())) and time.monotonic() < deadline:
            time.sleep(0.005)
        self.boosted_at_detach = boosted
        self.policy.stop()

    def _restore_cap(self) -> None:
        if self._saved_cap is not None:
            self._saved_cap.apply()
            self._saved_cap = None

    def _share_vcpu1_cpu(self) -> None:
        """vCPU 1's thread pinned where it runs, a host RT task above it on that CPU."""
        tid = self.threads[1]
        rows = {int(r["tid"]): r for r in self.snapshots.get("rt-shared-spin") or []}
        cpu = int(rows[tid]["cpu"]) if tid in rows else min(os.sched_getaffinity(tid))
        self._vcpu1_affinity = os.sched_getaffinity(tid)
        os.sched_setaffinity(tid, {cpu})
        self._hog = RtHog(cpu, SHARED_HOG_PRIORITY, SHARED_HOG_BUSY_S, SHARED_HOG_IDLE_S)
        self._hog.start()

    def _end_sharing(self) -> None:
        if self._hog is not None:
            self._hog.stop()
            self._hog = None
        if self._vcpu1_affinity:
            os.sched_setaffinity(self.threads[1], self._vcpu1_affinity)
            self._vcpu1_affinity = set()

    def _move_vcpu0(self) -> None:
        """Pin vCPU 0's thread to a CPU other than the one KVM reports for it:
        its next VM entry must report the new one (pvsched_host_knows_pcpu,
        judged on the snapshot taken when the next phase begins)."""
        tid = self.threads.get(0)
        rows = {int(r["tid"]): r for r in self.snapshots.get("malformed") or []}
        if tid is None or tid not in rows or (os.cpu_count() or 1) < 2:
            self.errors.append(f"cannot move vCPU 0 (tid {tid}, KVM rows {sorted(rows)}, {os.cpu_count()} CPUs)")
            return
        self.pinned_cpu = (int(rows[tid]["cpu"]) + 1) % (os.cpu_count() or 2)
        self._saved_affinity = os.sched_getaffinity(tid)
        os.sched_setaffinity(tid, {self.pinned_cpu})

    def _admin_nice(self) -> None:
        """As an admin would: vCPU 1's thread at nice 5 (between RT tasks, unboosted)."""
        tid = self.threads[1]
        os.setpriority(os.PRIO_PROCESS, tid, ADMIN_NICE)
        self.admin["nice_set"] = os.getpriority(os.PRIO_PROCESS, tid)

    def _admin_fifo(self) -> None:
        """After a boost and unboost the thread must be at nice 5 again; then the admin makes it SCHED_FIFO 60."""
        tid = self.threads[1]
        self.admin["nice_after_boost"] = os.getpriority(os.PRIO_PROCESS, tid)
        self.admin["policy_after_boost"] = os.sched_getscheduler(tid)
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(ADMIN_RT_PRIORITY))
        self.admin["fifo_set_at"] = time.monotonic()

    def _admin_done(self) -> None:
        """The thread kept the admin's SCHED_FIFO 60 through the guest's RT task; then back to normal."""
        tid = self.threads[1]
        self.admin["fifo_after_boost"] = (os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority)
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, tid, 0)

    def _admin_hold(self) -> None:
        """The admin makes vCPU 1's thread SCHED_FIFO 60 before the guest's RT task asks for a boost.
        Uncapped until admin-release-done: at the shipped cap the boosts after the release
        spend the budget within 50 ms, and the policy's request, refused while throttled,
        no longer shows the RT task's (CI run 20261206T154028Z-1f06)."""
        self._uncap()
        os.sched_setscheduler(self.threads[1], os.SCHED_FIFO, os.sched_param(ADMIN_RT_PRIORITY))

    def _admin_release(self) -> None:
        """The thread kept the admin's FIFO 60 (KVM kept the boost); then the admin
        puts it back to SCHED_OTHER while the guest's RT task still runs."""
        tid = self.threads[1]
        self.admin["held_at_release"] = (os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority)
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        self.admin["wanted_at_release"] = self._wanted(1)

    def _uncap(self) -> None:
        """KVM's cap lifted (budget = period) until _restore_cap()."""
        self._saved_cap = Cap.read()
        Cap(*_UNCAPPED).apply()

    def _vcpu_stats(self, vcpu_id: int) -> dict[str, int] | None:
        """The policy's statistics of a vCPU, 100 ms old at most."""
        return next((v for v in self.policy.vcpus() if v.get("vcpu_id") == vcpu_id), None)

    def _wanted(self, vcpu_id: int) -> int | None:
        """The policy's standing request for a vCPU."""
        stats = self._vcpu_stats(vcpu_id)
        return None if stats is None else stats.get("wanted")

    def _start_admin_flips(self) -> None:
        flip = Flip(self.threads[1], ADMIN_RT_PRIORITY, ADMIN_FLIP_HOLD_S, ADMIN_FLIP_GAP_S, ADMIN_FLIPPER_PRIORITY)
        self._admin_flipper = RtFlip(self._sample_file.with_name("lab-admin-flips.txt"), flip)
        self._admin_flipper.start()

    def _stop_admin_flips(self) -> None:
        """End the flips (the thread is left SCHED_OTHER) and keep their count."""
        if self._admin_flipper is not None:
            self.admin_flips = self._admin_flipper.stop()
            self._admin_flipper = None

    def _release_vcpu0(self) -> None:
        tid = self.threads.get(0)
        if tid is not None and self._saved_affinity:
            os.sched_setaffinity(tid, self._saved_affinity)

    def start_sampler(self) -> None:
        """Start the sampler process now, so it is up before the guest's phases."""
        self._sample_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "lab.invm.vcpu_sampler", str(self._sample_file), str(self.policy.live or self.policy.stats),
                str(SAMPLE_INTERVAL)]  # fmt: skip
        self._sampler = self.policy.runner.start(argv, "vcpu sampler", stdin=True)

    def _learn_threads(self) -> None:
        self.threads = qmp_vcpu_threads(self.qmp)
        if self._sampler is not None and self._sampler.stdin is not None:
            self._sampler.stdin.write(" ".join(str(t) for t in self.threads.values()) + "\n")
            self._sampler.stdin.close()

    def phase_at(self, t: float) -> str:
        """The guest phase announced last before monotonic time t."""
        current = "boot"
        for name, start in sorted(self.phase_times.items(), key=lambda kv: kv[1]):
            if start <= t:
                current = name
        return current

    def load_samples(self, path: Path) -> None:
        """Turn the sampler's JSON lines into samples, the RT delay and priorities."""
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            self.errors.append(f"sampler wrote nothing: {exc}")
            return
        rt_start = self.phase_times.get("rt")
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # the last line of a killed sampler may be cut
            t = float(rec["t"])
            self.samples.append(Sample(t, self.phase_at(t), {int(k): v for k, v in rec["policies"].items()},
                                       {int(k): v for k, v in rec.get("priorities", {}).items()}))  # fmt: skip
            vcpus = rec.get("vcpus") or []
            if vcpus:  # the sampler reads the policy's statistics every few samples only
                t = float(rec.get("t_vcpus", t))  # when they were read, at the latest
                self.policy_samples.append((t, vcpus))
            # The guest's RT task (priority 50, on vCPU 1), not any FIFO thread of the guest (its kthreads are FIFO 99).
            ours = [v for v in vcpus if int(v.get("vcpu_id", -1)) == 1 and v.get("rt_seen", 0)
                    and int(v.get("last_rt_priority", 0)) == GUEST_RT_PRIORITY]  # fmt: skip
            if self.rt_seen_after is None and rt_start is not None and t >= rt_start and ours:
                self.rt_seen_after = t - rt_start
            # last_rt_priority: of the last RT task the policy saw (kept across non-RT events).
            self.rt_priorities |= {int(v["last_rt_priority"]) for v in vcpus if v.get("rt_seen", 0) and v.get("last_rt_priority")}

    def finish(self) -> None:
        self._end_sharing()  # a guest that died in the shared-CPU phase
        self._stop_admin_flips()  # ... or in the admin-flip phase
        if self._detacher is not None:
            self._detacher.join()
        self._restore_cap()  # a guest that died before detach-done
        if self._sampler is not None:
            rc = self._sampler.stop(signal.SIGTERM, grace=10)
            if rc is None:
                # Unkillable: asleep in the kernel. Say where, and go on.
                self.errors.append(f"sampler stuck in the kernel: {kernel_stack(self._sampler.pid)}")
            elif rc not in (0, -signal.SIGTERM):
                self.errors.append(f"sampler exited {rc}: {self._sampler.output.strip()[-300:]}")
            self.load_samples(self._sample_file)
            gaps = [b.t - a.t for a, b in zip(self.samples, self.samples[1:], strict=False)]
            self.max_sample_gap = max(gaps, default=0.0)
        self.policy.stop()


def static_checks(runner: Runner, loader: str, load_check: str, rejected: list[str]) -> list[Case]:
    """Checks that need no guest: the verifier allowlist and privilege."""
    cases = []
    for obj in rejected:
        res = runner.run([load_check, obj], f"verifier rejects {Path(obj).name}", timeout=120, check=False)
        log = res.output
        ok = res.returncode == 1 and "not allowed" in log
        cases.append(Case(f"pvsched_verifier_rejects_{Path(obj).name.removesuffix('.bpf.o')}", "level1",
                          "passed" if ok else "failed", "" if ok else log[-400:]))  # fmt: skip
    res = runner.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", loader, "-o", "/dev/null"],
                     "unprivileged policy load", timeout=60, check=False)  # fmt: skip
    log = res.output
    # Refused by the kernel for want of privilege, not failing for any other reason.
    refused = re.search(r"Operation not permitted|Permission denied|failed: -(1|13)\b|-EPERM|-EACCES", log)
    ok = res.returncode != 0 and "attached" not in log.splitlines() and refused is not None
    cases.append(Case("pvsched_unprivileged_cannot_load_policy", "level1", "passed" if ok else "failed",
                      "" if ok else f"exit {res.returncode}, no EPERM/EACCES: {log[-300:]}"))  # fmt: skip
    cases.append(cap_refuses_budget_above_period())
    return cases


def cap_refuses_budget_above_period() -> Case:
    """KVM refuses a budget above the period (a cap that cannot bind), from either side, and keeps its cap."""
    name = "pvsched_cap_refuses_budget_above_period"
    try:
        before = read_cap()
    except (OSError, ValueError) as exc:
        return Case(name, "level1", "failed", f"cannot read the cap: {exc}")
    budget, period = before
    accepted = []
    for param, value in (("pvsched_budget_us", period + 1), ("pvsched_period_us", budget - 1)):
        try:
            set_kvm_param(param, value)
            accepted.append(f"{param}={value}")
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                accepted.append(f"{param}={value} failed with {exc} (want EINVAL)")
    after = read_cap()
    if accepted:
        set_cap(*before)
    ok = not accepted and after == before
    return Case(name, "level1", "passed" if ok else "failed", f"cap {before} -> {after}; accepted: {accepted or 'none'}")


SCX_STATE = Path("/sys/kernel/sched_ext/state")


def scx_state() -> str:
    try:
        return SCX_STATE.read_text().strip()
    except OSError:
        return "unavailable"


def await_scx_state(want: tuple[str, ...], timeout: float) -> str:
    """sched_ext's state as soon as it is one of `want`, else what it is after `timeout` s."""
    deadline = time.monotonic() + timeout
    while (state := scx_state()) not in want and time.monotonic() < deadline:
        time.sleep(0.1)
    return state
