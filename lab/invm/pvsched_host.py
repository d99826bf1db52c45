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
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.invm.cpu_hog import RtHog
from lab.invm.vcpu_sampler import SAMPLER_PRIORITY as OBSERVER_PRIORITY
from lab.ktap import Case
from lab.protocol import GUEST_PHASE, GUEST_READY
from lab.runner import Background, Runner

KVM_DEBUGFS = Path("/sys/kernel/debug/kvm_pvsched/vcpus")
KVM_PARAMS = Path("/sys/module/kvm/parameters")
SCHED_OTHER, SCHED_FIFO = 0, 1
BOOST_PRIORITY, HINT_PRIORITY = 10, 1  # the boost policy's defaults (bpf/pvsched_boost.bpf.c)
GUEST_RT_PRIORITY = 50  # the guest's RT task (rtspin 50 in guest_init.sh)
UNBOOST_MIN_SAMPLES = 3
HOOKS = ("vmenter", "vmexit", "halt", "intr_inj")  # the policy's per-event counts (bpf/pvsched_stats.h)
# The hostile phase runs with a small budget so throttling shows quickly,
# and its VM's vCPUs together get half a vCPU's budget: one busy vCPU alone
# spends the VM's budget first.
HOSTILE_BUDGET_US, HOSTILE_PERIOD_US = 20_000, 100_000
HOSTILE_VM_BUDGET_US = 10_000
Rows = dict[str, dict[str, str]]  # KVM's debugfs rows by thread id
# What the admin phases set on vCPU 1's thread: a nice value, and an RT priority above any boost.
ADMIN_NICE, ADMIN_RT_PRIORITY = 5, 60
# The phases that run under that cap (the guest's phase line -> its end).
TEST_CAP_PHASES = {"hostile": "hostile-done", "dodge": "dodge-done", "rt-long": "rt-long-done", "rt-shared": "rt-shared-done"}
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


SAMPLE_INTERVAL = 0.05
UNBOOST_SETTLE_S = 0.3  # how long an unboost may take to show
UNBOOST_WINDOW_S = 0.5  # then at least one sample in this long must show it


def observe_above_boosts() -> None:
    """Run the calling thread at SCHED_FIFO above boosts; children start normal."""
    policy = os.SCHED_FIFO | os.SCHED_RESET_ON_FORK
    os.sched_setscheduler(0, policy, os.sched_param(OBSERVER_PRIORITY))


def qmp_vcpu_threads(sock_path: Path, timeout: float = 10.0) -> dict[int, int]:
    """cpu-index -> host thread id, from QEMU's QMP `query-cpus-fast`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(str(sock_path))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with s, s.makefile("rw") as f:
        json.loads(f.readline())  # greeting
        for cmd in ("qmp_capabilities", "query-cpus-fast"):
            f.write(json.dumps({"execute": cmd}) + "\n")
            f.flush()
            while True:
                reply = json.loads(f.readline())
                if "return" in reply or "error" in reply:
                    break
    return {int(c["cpu-index"]): int(c["thread-id"]) for c in reply.get("return", [])}


def start_load(runner: Runner, *args: str, settle: float = 0.5) -> Background:
    """stress-ng ARGS as host load; raises if it does not keep running.

    stress-ng refuses to start in a directory it cannot write (level 1's
    working directory is the read-only repo) and says so only on its output:
    a silently missing load once made "loaded" runs equal idle ones.
    """
    proc = runner.start(["stress-ng", "--temp-path", "/tmp", *args], "host load", cwd=Path("/tmp"))
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
    _saved_cap: tuple[int, int] | None = None
    _saved_vm_budget: int | None = None
    pinned_cpu: int | None = None  # where vCPU 0's thread was moved in the malformed phase
    test_cap_at: dict[str, float] = field(default_factory=dict)  # when the test cap was set, per phase
    admin: dict[str, object] = field(default_factory=dict)  # what the admin phases set and read
    _saved_affinity: set[int] = field(default_factory=set)
    _hog: RtHog | None = None
    _vcpu1_affinity: set[int] = field(default_factory=set)

    def on_line(self, line: str) -> None:
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
        elif name in TEST_CAP_PHASES:
            self._saved_cap = read_cap()
            if name == "hostile":
                self._saved_vm_budget = int((KVM_PARAMS / "pvsched_vm_budget_us").read_text())
                set_kvm_param("pvsched_vm_budget_us", HOSTILE_VM_BUDGET_US)
            set_cap(HOSTILE_BUDGET_US, HOSTILE_PERIOD_US)
            self.test_cap_at[name] = time.monotonic()
        elif name in TEST_CAP_PHASES.values() and self._saved_cap is not None:
            if self._saved_vm_budget is not None:
                set_kvm_param("pvsched_vm_budget_us", self._saved_vm_budget)
                self._saved_vm_budget = None
            self._end_sharing()
            set_cap(*self._saved_cap)
        elif name == "admin-nice":
            self._admin_nice()
        elif name == "admin-fifo":
            self._admin_fifo()
        elif name == "admin-done":
            self._admin_done()
        elif name == "rt-shared-spin":
            self._share_vcpu1_cpu()
        elif name == "malformed":
            self._move_vcpu0()
        elif name == "malformed-done":
            self._release_vcpu0()
        elif name == "detach":
            self.policy.stop()

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

    def _admin_cases(self) -> list[Case]:
        """What the admin set on a registered vCPU thread stands (docs/pvsched.md, restore semantics)."""
        rows = {p: {int(r["tid"]): r for r in self.snapshots.get(p, [])} for p in ("admin-nice", "admin-fifo", "admin-done")}
        tid = self.threads.get(1)
        errors = [e for e in self.errors if "admin" in e]

        def grew(key: str, start: str, end: str) -> int | None:
            a, b = rows[start].get(tid or -1), rows[end].get(tid or -1)
            return None if a is None or b is None or key not in a else int(b[key]) - int(a[key])

        boosted = grew("boosts", "admin-nice", "admin-fifo")
        nice = self.admin.get("nice_after_boost")
        ok = not errors and self.admin.get("nice_set") == ADMIN_NICE and bool(boosted) and nice == ADMIN_NICE
        nice_case = Case("pvsched_restore_keeps_admin_nice", "level1", "passed" if ok else "failed",
                         f"nice {self.admin.get('nice_set')} set, {boosted} boosts, then nice {nice} "
                         f"(policy {self.admin.get('policy_after_boost')}) {'; '.join(errors)}".strip())  # fmt: skip
        # Samples from after the admin's change (the boost of the previous RT task may last until then).
        set_at = self.admin.get("fifo_set_at")
        fifo = [s for s in self.samples if s.phase == "admin-fifo" and s.policies.get(tid or -1) is not None
                and isinstance(set_at, float) and s.t > set_at]  # fmt: skip
        lowered = [(s.policies.get(tid or -1), s.priorities.get(tid or -1)) for s in fifo
                   if (s.policies.get(tid or -1), s.priorities.get(tid or -1)) != (SCHED_FIFO, ADMIN_RT_PRIORITY)]  # fmt: skip
        kept = grew("kept_rt", "admin-fifo", "admin-done")
        end = self.admin.get("fifo_after_boost")
        ok = not errors and len(fifo) >= 3 and not lowered and end == (SCHED_FIFO, ADMIN_RT_PRIORITY) and bool(kept)
        fifo_case = Case("pvsched_boost_never_lowers_rt_thread", "level1", "passed" if ok else "failed",
                         f"{len(fifo)} samples at FIFO {ADMIN_RT_PRIORITY} set by the admin, other: {lowered[:5]}; "
                         f"boosts KVM kept from it: {kept}; at the end {end}")  # fmt: skip
        return [nice_case, fifo_case]

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

    # -- verdicts ------------------------------------------------------------

    def cases(self) -> list[Case]:
        per_phase: dict[str, int] = {}
        for smp in self.samples:
            per_phase[smp.phase] = per_phase.get(smp.phase, 0) + 1
        diag = f"samples per phase {per_phase}, longest gap {self.max_sample_gap:.2f} s"
        cases = [Case("pvsched_host_observer", "level1", "failed" if self.errors else "passed", "; ".join([*self.errors, diag]))]
        stats = self.policy.vcpus()
        by_vcpu = {int(v["vcpu_id"]): v for v in stats}
        tids = set(self.threads.values())

        def case(name: str, ok: bool, why: str) -> None:
            cases.append(Case(name, "level1", "passed" if ok else "failed", "" if ok else why))

        seen = {int(v["tid"]) for v in stats}
        case("pvsched_host_sees_every_vcpu", bool(tids) and tids <= seen,
             f"QMP vCPU threads {sorted(tids)}, policy saw {sorted(seen)}")  # fmt: skip
        # Each of KVM's four hooks called the policy for every vCPU (a missing hook leaves the others working).
        silent = [f"vCPU {v['vcpu_id']} {hook}" for v in stats for hook in HOOKS if not int(v.get(hook, 0))]
        case("pvsched_policy_called_at_every_hook", bool(stats) and not silent,
             f"never called: {silent or 'no statistics'}")  # fmt: skip
        cases.append(self._pcpu_case())
        rt_window = self._window("rt", "rt-done")
        seen_in_time = self.rt_seen_after is not None and rt_window is not None and self.rt_seen_after <= rt_window
        case("pvsched_rt_task_visible_to_host", seen_in_time,
             f"vCPU 1's RT task (FIFO {GUEST_RT_PRIORITY}) seen {self.rt_seen_after} s into an RT phase of {rt_window} s")  # fmt: skip
        case("pvsched_rt_priority_visible_to_host", 50 in self.rt_priorities,
             f"RT priorities the host saw: {sorted(self.rt_priorities)} (the guest task runs at 50)")  # fmt: skip
        rt_samples = [s for s in self.samples if s.phase == "rt"]
        fifo = [s for s in rt_samples if SCHED_FIFO in s.policies.values()]
        case("pvsched_boost_sets_vcpu_thread_fifo", bool(fifo),
             f"{len(rt_samples)} samples of the vCPU threads during the RT phase, none SCHED_FIFO")  # fmt: skip
        # RT work is boosted at the policy's boost priority, a guest's bare
        # requests (the hostile phase) only at its hint priority.
        rt_prios = set().union(*(s.fifo_priorities() for s in rt_samples))
        hint_prios = set().union(*(s.fifo_priorities() for s in self.samples if s.phase == "hostile"))
        prios = f"FIFO priorities of vCPU threads: RT phase {sorted(rt_prios)}, hostile phase {sorted(hint_prios)}"
        ok = BOOST_PRIORITY in rt_prios and HINT_PRIORITY in hint_prios
        cases.append(Case("pvsched_rt_work_boosted_above_hints", "level1", "passed" if ok else "failed",
                          prios if ok else f"{prios} (want {BOOST_PRIORITY} and {HINT_PRIORITY})"))  # fmt: skip
        # vCPU 1 ran the RT task; vCPU 0 may be boosted by its own interrupts.
        rt_tid = self.threads.get(1)
        # A window starting UNBOOST_SETTLE_S into rt-done (the guest's own check
        # waits as long), not the phase's end: phases are dated by console
        # lines, which arrive late under TCG, and the next phase (malformed)
        # writes an RT policy into the area on purpose. A stuck RT boost is
        # FIFO in every sample of the window; a short critical-section boost
        # (the guest's IRQs) may show in some (seen).
        done_at = self.phase_times.get("rt-done")
        done = [s.policies.get(rt_tid) for s in self.samples if rt_tid is not None and s.phase == "rt-done"
                and done_at is not None and done_at + UNBOOST_SETTLE_S <= s.t <= done_at + UNBOOST_SETTLE_S + UNBOOST_WINDOW_S]  # fmt: skip
        sampled = [p for p in done if p is not None]  # a thread not sampled says nothing
        unboosted = [p for p in sampled if p == SCHED_OTHER]
        case("pvsched_unboost_restores_vcpu_thread",
             rt_tid is not None and len(sampled) >= UNBOOST_MIN_SAMPLES and 2 * len(unboosted) > len(sampled),
             f"vCPU 1 (tid {rt_tid}) policies {UNBOOST_SETTLE_S}-{UNBOOST_SETTLE_S + UNBOOST_WINDOW_S} s after the RT "
             f"phase: {done or 'no samples'} (want at least {UNBOOST_MIN_SAMPLES} sampled, most SCHED_OTHER)")  # fmt: skip
        # Judged on what the policy saw before the malformed phase, whose garbage sets any bit.
        before_garbage = self._stats_before("malformed")
        hard = sum(v.get("hardirq_seen", 0) for v in before_garbage)
        soft = sum(v.get("softirq_seen", 0) for v in before_garbage)
        case("pvsched_host_sees_irq_bits", hard > 0 and soft > 0,
             f"events that saw the guest in a hard IRQ: {hard}, in a soft IRQ: {soft}, before the malformed phase "
             f"({len(before_garbage)} vCPUs)")  # fmt: skip
        cases.append(self._malformed_case())
        cpu1 = by_vcpu.get(1, {})
        case("pvsched_hotplug_reregisters", int(cpu1.get("registrations", 0)) >= 3,
             f"vCPU 1 registered {cpu1.get('registrations')} times (expected load, hotplug online, reload: >= 3)")  # fmt: skip
        cases.append(self._hostile_case())
        cases.append(self._vm_budget_case())
        cases.append(self._dodge_case())
        cases.extend(self._long_boost_cases())
        cases.extend(self._admin_cases())
        cases.append(self._setattr_case())
        cases.append(self._host_writes_case())
        cases.append(self._stale_throttle_case())
        cases.append(self._detach_case())
        # The hostile guest's requests, counted over its phase only (the malformed phase's garbage sets the flag too).
        requests = self._stat_delta("request_seen", "hostile", "hostile-done")
        case("pvsched_request_flag_seen", bool(requests), f"boost requests the policy saw during the hostile phase: {requests}")
        return cases

    def _hog_missing(self) -> bool:
        return any("rt-shared" in e for e in self.errors)

    def _window(self, start: str, end: str) -> float | None:
        """Seconds between two phases' console lines, or None if either was not seen."""
        a, b = self.phase_times.get(start), self.phase_times.get(end)
        return None if a is None or b is None else b - a

    def _stats_before(self, phase: str) -> list[dict[str, int]]:
        """The policy's per-vCPU statistics in the last sample before `phase` began ([] if none)."""
        at = self.phase_times.get(phase)
        earlier = [vcpus for t, vcpus in self.policy_samples if at is not None and t < at]
        return earlier[-1] if earlier else []

    def _stat_delta(self, key: str, start: str, end: str) -> int | None:
        """How much a policy statistic grew between two phases (summed over vCPUs); None without samples."""
        before, after = self._stats_before(start), self._stats_before(end)
        if not after:
            return None
        return sum(int(v.get(key, 0)) for v in after) - sum(int(v.get(key, 0)) for v in before)

    def _pcpu_case(self) -> Case:
        """KVM follows the vCPU thread: after it was moved to another CPU, KVM reports that CPU."""
        name, tid = "pvsched_host_knows_pcpu", self.threads.get(0)
        before = {int(r["tid"]): r.get("cpu") for r in self.snapshots.get("malformed") or []}
        after = {int(r["tid"]): r.get("cpu") for r in self.snapshots.get("malformed-done") or []}
        now = after.get(tid) if tid is not None else None
        if self.pinned_cpu is None or tid is None or now is None:
            return Case(name, "level1", "failed", f"vCPU 0 (tid {tid}) was not moved or not read after: {before} -> {after}")
        ok = int(now) == self.pinned_cpu
        why = f"vCPU 0 reported on CPU {before.get(tid)}, moved to CPU {self.pinned_cpu}, then reported on CPU {now}"
        return Case(name, "level1", "passed" if ok else "failed", why)

    def _malformed_case(self) -> Case:
        """KVM's own count of malformed areas grew over the malformed phase (read errors are not malformed areas)."""
        name = "pvsched_malformed_areas_counted"
        before, after = self.snapshots.get("malformed"), self.snapshots.get("malformed-done")
        if not before or not after:
            return Case(name, "level1", "failed", f"no KVM snapshot around the malformed phase ({before}, {after})")
        grown = sum(int(r["malformed"]) for r in after) - sum(int(r["malformed"]) for r in before)
        return Case(name, "level1", "passed" if grown > 0 else "failed", f"KVM counted {grown} malformed areas in the phase")

    def _hostile_case(self) -> Case:
        before = {r["tid"]: r for r in self.snapshots.get("hostile", [])}
        after = {r["tid"]: r for r in self.snapshots.get("hostile-done", [])}
        start, end = self.phase_times.get("hostile"), self.phase_times.get("hostile-done")
        # KVM's counters are the vCPU's since its first registration: both readings are needed.
        tids = set(before) & set(after)
        if not tids or start is None or end is None:
            return Case("pvsched_hostile_guest_throttled", "level1", "failed",
                        f"no KVM rows of one vCPU on both sides of the hostile phase: {sorted(before)} -> {sorted(after)}")  # fmt: skip
        throttles = sum(int(after[t]["throttles"]) - int(before[t]["throttles"]) for t in tids)

        # The cap is on CPU time used while boosted (a boosted vCPU that
        # waits for its CPU or halts uses none); wall time boosted may
        # exceed it, and is reported beside it.
        def used(key: str) -> float:
            return max((int(after[t][key]) - int(before[t][key])) / 1e9 for t in tids)

        cpu_s, wall_s = used("boosted_cpu_ns"), used("boosted_ns")
        periods = (end - start) / (HOSTILE_PERIOD_US / 1e6)
        cap_s = (periods + 1) * HOSTILE_BUDGET_US / 1e6
        ok = throttles > 0 and cpu_s <= cap_s * 1.2
        return Case("pvsched_hostile_guest_throttled", "level1", "passed" if ok else "failed",
                    f"throttles={throttles}, most boosted vCPU used {cpu_s:.3f} s CPU ({wall_s:.3f} s wall) boosted, "
                    f"cap {cap_s:.3f} s CPU over {end - start:.2f} s")  # fmt: skip

    def _around(self, phase: str, done: str) -> tuple[Rows, Rows, list[str], float | None, float | None]:
        """KVM's rows by thread id at a phase's start and end, the threads in
        both, and the phase's start and end times."""
        before = {r["tid"]: r for r in self.snapshots.get(phase, [])}
        after = {r["tid"]: r for r in self.snapshots.get(done, [])}
        return before, after, sorted(set(before) & set(after)), self.phase_times.get(phase), self.phase_times.get(done)

    def _vm_budget_case(self) -> Case:
        """The hostile guest's vCPUs together stay within the VM's budget
        (10 ms per 100 ms, half of one vCPU's), and KVM says the VM's budget throttled them."""
        name = "pvsched_vm_budget_holds"
        before, after, tids, start, end = self._around("hostile", "hostile-done")
        if not tids or start is None or end is None or any("vm_throttles" not in after[t] for t in tids):
            return Case(
                name,
                "level1",
                "failed",
                f"no KVM rows with vm_throttles on both sides of the hostile phase: {sorted(before)} -> {sorted(after)}",
            )
        used_s = sum(int(after[t]["boosted_cpu_ns"]) - int(before[t]["boosted_cpu_ns"]) for t in tids) / 1e9
        vm_throttles = sum(int(after[t]["vm_throttles"]) - int(before[t]["vm_throttles"]) for t in tids)
        cap_s = ((end - start) / (HOSTILE_PERIOD_US / 1e6) + 1) * HOSTILE_VM_BUDGET_US / 1e6
        ok = vm_throttles > 0 and used_s <= cap_s * 1.2
        return Case(name, "level1", "passed" if ok else "failed",
                    f"the VM's {len(tids)} vCPUs used {used_s:.3f} s CPU boosted in {end - start:.2f} s "
                    f"(VM cap {cap_s:.3f} s); throttles by the VM's budget: {vm_throttles}")  # fmt: skip

    def _dodge_case(self) -> Case:
        """A guest that registers again whenever KVM throttles it stays capped:
        KVM's counters (which now outlive a registration) and the sampled
        policies of its vCPU threads both show the cap."""
        name = "pvsched_reregistering_guest_still_capped"
        before, after, tids, start, end = self._around("dodge", "dodge-done")
        if not tids or start is None or end is None or any("registrations" not in after[t] for t in tids):
            return Case(name, "level1", "failed", f"no KVM rows with registrations around the dodge phase: {before} -> {after}")

        def grew(key: str) -> list[int]:
            return [int(after[t][key]) - int(before[t][key]) for t in tids]

        registrations, throttles = sum(grew("registrations")), sum(grew("throttles"))
        cpu_s = max(grew("boosted_cpu_ns")) / 1e9
        cap_s = ((end - start) / (HOSTILE_PERIOD_US / 1e6) + 1) * HOSTILE_BUDGET_US / 1e6
        threads = set(self.threads.values())
        phase = [s for s in self.samples if s.phase == "dodge"]
        shares = {t: sum(s.policies.get(t) == SCHED_FIFO for s in phase) / len(phase) for t in threads} if phase else {}
        share = max(shares.values(), default=1.0)
        ok = (registrations > 0 and throttles > 0 and cpu_s <= cap_s * 1.2
              and len(phase) >= DODGE_MIN_SAMPLES and share <= DODGE_MAX_FIFO_SHARE)  # fmt: skip
        return Case(name, "level1", "passed" if ok else "failed",
                    f"{registrations} registrations and {throttles} throttles in {end - start:.2f} s; most boosted vCPU "
                    f"used {cpu_s:.3f} s CPU boosted (cap {cap_s:.3f} s); boosted in {share:.0%} of {len(phase)} samples "
                    f"(at most {DODGE_MAX_FIFO_SHARE:.0%})")  # fmt: skip

    def _long_boost_cases(self) -> list[Case]:
        """vCPU 1 runs one RT task without a break under the test cap: KVM must
        throttle it at the budget in every period, not only when the guest asks again."""
        names = ("pvsched_long_boost_capped",)
        tid = self.threads.get(1)
        before = {int(r["tid"]): r for r in self.snapshots.get("rt-long-spin", [])}
        after = {int(r["tid"]): r for r in self.snapshots.get("rt-long-done", [])}
        start, end = self.phase_times.get("rt-long-spin"), self.phase_times.get("rt-long-done")
        cap_at = self.test_cap_at.get("rt-long")
        if tid is None or tid not in before or tid not in after or start is None or end is None:
            why = f"no KVM row of vCPU 1 (tid {tid}) around the long RT phase: {sorted(before)} -> {sorted(after)}"
            return [Case(n, "level1", "failed", why) for n in names]
        if cap_at is None or cap_at > start:
            why = f"the test cap was set at {cap_at}, not before the RT task started at {start}"
            return [Case(n, "level1", "failed", why) for n in names]

        def grew(key: str) -> int:
            return int(after[tid][key]) - int(before[tid][key])

        periods = (end - start) / (HOSTILE_PERIOD_US / 1e6)
        cpu_s, throttles, boosts = grew("boosted_cpu_ns") / 1e9, grew("throttles"), grew("boosts")
        cap_s = (periods + 1) * HOSTILE_BUDGET_US / 1e6
        seen = f"{end - start:.2f} s ({periods:.1f} periods): boosts={boosts}, throttles={throttles}, {cpu_s:.3f} s CPU boosted"
        capped = throttles > 0 and cpu_s <= cap_s * 1.2
        return [Case(names[0], "level1", "passed" if capped else "failed", f"{seen}; cap {cap_s:.3f} s CPU")]

    def _setattr_case(self) -> Case:
        """Every boost and restore KVM asked of the scheduler was applied (KVM counts the refusals)."""
        name, rows = "pvsched_scheduler_applied_every_boost", self.snapshots.get("detach") or []
        if not rows or any("setattr_failures" not in r for r in rows):
            return Case(name, "level1", "failed", f"no KVM counts of refused boosts at the guest's last phase: {rows[:2]}")
        failures = {r["tid"]: int(r["setattr_failures"]) for r in rows}
        boosts = sum(int(r["boosts"]) for r in rows)
        ok = boosts > 0 and not any(failures.values())
        return Case(name, "level1", "passed" if ok else "failed", f"{boosts} boosts; refused by the scheduler per thread: {failures}")

    def _host_writes_case(self) -> Case:
        """KVM writes the host half when it changed, not at every entry, exit
        and halt (each write dirties the guest's page)."""
        name, rows = "pvsched_host_half_written_on_change", self.snapshots.get("detach") or []
        if not rows or any("host_writes" not in r for r in rows):
            return Case(name, "level1", "failed", f"no KVM count of host-half writes at the guest's last phase: {rows[:2]}")
        writes = sum(int(r["host_writes"]) for r in rows)
        events = sum(int(r[k]) for r in rows for k in ("vmenter", "vmexit", "halt"))
        ok = writes > 0 and events > 0 and writes <= HOST_WRITES_MAX_SHARE * events
        return Case(name, "level1", "passed" if ok else "failed",
                    f"{writes} writes of the host half for {events} entries, exits and halts "
                    f"(at most {HOST_WRITES_MAX_SHARE:.0%})")  # fmt: skip

    def _stale_throttle_case(self) -> Case:
        """Every throttle lasted until its period's end: KVM counts one that would
        have ended before it began (a period not rolled over first)."""
        # At the end of the phases under the test cap (each registration counts afresh).
        name = "pvsched_throttles_last_their_period"
        rows = [r for end in TEST_CAP_PHASES.values() for r in self.snapshots.get(end) or []]
        if not rows or any("stale_throttles" not in r for r in rows):
            return Case(name, "level1", "failed", f"no KVM counts of stale throttles after the throttling phases: {rows[:2]}")
        # rt-shared must have held vCPU 1 boosted across periods on less than
        # the budget in each: the case that needs the period rolled under a boost.
        tid = self.threads.get(1, -1)
        before = {int(r["tid"]): r for r in self.snapshots.get("rt-shared-spin") or []}.get(tid)
        after = {int(r["tid"]): r for r in self.snapshots.get("rt-shared-done") or []}.get(tid)
        if before is None or after is None or self._hog_missing():
            return Case(
                name, "level1", "failed", f"no KVM rows of vCPU 1 around the shared-CPU phase, or no host RT task: {self.errors[-1:]}"
            )
        held_s = (int(after["boosted_ns"]) - int(before["boosted_ns"])) / 1e9
        stale = [int(r["stale_throttles"]) for r in rows]
        throttles = sum(int(r["throttles"]) for r in rows)
        periods = held_s / (HOSTILE_PERIOD_US / 1e6)
        ok = throttles > 0 and periods >= 2 and not any(stale)
        return Case(
            name,
            "level1",
            "passed" if ok else "failed",
            f"{throttles} throttles; ended before they began, per vCPU and phase: {stale}; "
            f"vCPU 1 boosted {held_s:.2f} s ({periods:.0f} periods) beside the host RT task",
        )

    def _detach_case(self) -> Case:
        if self.policy.stopped_at is None:
            return Case("pvsched_policy_detach_restores", "level1", "failed", "the policy was never detached")
        # Only samples of live threads: after the VM is gone every sample is trivially unboosted.
        after = [
            s for s in self.samples
            if s.t > self.policy.stopped_at + 0.1 and s.phase == "detach" and any(p is not None for p in s.policies.values())
        ]  # fmt: skip
        bad = [s for s in after if any(p == SCHED_FIFO for p in s.policies.values())]
        ok = bool(after) and not bad
        try:
            state: object = read_kvm_vcpus()
        except DebugfsUnreadable as exc:
            state = str(exc)
        return Case("pvsched_policy_detach_restores", "level1", "passed" if ok else "failed",
                    f"{len(after)} samples after detach, {len(bad)} with a SCHED_FIFO vCPU thread; kvm: {state}")  # fmt: skip


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
