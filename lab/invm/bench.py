"""The latency benchmark inside level 1 (`nox -s bench`). Stdlib only.

Rounds: each one guest boot whose cyclictest measures one window per mode,
in the order the host chose for that round (rotated round by round). Level
1 sets each mode up when the guest announces the window (LAB-BENCH-PREPARE)
and the guest waits a settle time before it opens it (START), so static's
priorities and the policies are in place before the window, and the host's
own cyclictest runs in the same window:

  idle           no host load: the floor
  vanilla        host loaded, no policy
  pvsched        host loaded, the boost policy attached, KVM's shipped cap
  pvsched-nocap  the same with budget = period (the mechanism without its cap)
  scx            host loaded, the sched_ext policy attached
  static         host loaded, every vCPU thread SCHED_FIFO by hand (no cap)

The guest driver is loaded for the pvsched modes and scx only. Plus an
`overhead` boot on an idle host: a guest throughput workload (hackbench)
with and without the guest driver. Results go to <out>/bench-level1.json.

Scenarios (`scenario` in the config):

  single   one cyclictest thread in the guest (a 1-vCPU guest by default)
  smp      one cyclictest thread pinned to each vCPU (a 2-vCPU guest by
           default), every vCPU thread on the loaded host CPU
  tenants  the single guest beside a second VM of the same size with the
           driver loaded and every vCPU busy (lab.mode=tenant), on the same
           loaded host CPU; per window, the tenant's CPU time per second
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lab.invm import pvsched_host, watchdog
from lab.invm.level2 import boot_guest, qemu_command
from lab.protocol import BENCH_MODES, BENCH_OVERDUE_GRACE_S, LEVEL1_DONE, LEVEL1_READY
from lab.runner import Background, Runner

MODES = BENCH_MODES
STATIC_PRIORITY = 10  # the same priority the boost policy uses
# The host's own real-time work, below the boost priority: what a boost costs it.
HOST_PRIORITY = 5
# The host probe wakes 4x less often than the guest's: under TCG a 2 kHz RT
# task pinned beside the vCPU starved it into RCU stalls (seen here).
HOST_INTERVAL_FACTOR = 4
TENANT_READY = "LAB-TENANT busy"
# A window still open BENCH_OVERDUE_GRACE_S past its length is livelocked,
# not late: the guest times its window by its own clock, which follows the
# host's; a livelocked guest never ends it (static RT with a 2-vCPU guest on
# one CPU, seen). Level 1 then withdraws the mode, and the window's result is
# the livelock. Each window's length as level 1 saw it is kept (window_s).
OVERDUE_GRACE_S = BENCH_OVERDUE_GRACE_S


def guest_threads(cfg: dict[str, Any]) -> int:
    """cyclictest threads in the guest: one per vCPU in the smp scenario, else one."""
    return int(cfg["guest_cpus"]) if cfg.get("scenario") == "smp" else 1


def thread_cpu_ns(tid: int) -> int | None:
    """CPU time a thread has run, in ns (/proc/<tid>/schedstat), None once it is gone."""
    try:
        return int(Path(f"/proc/{tid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Tenant:
    """The tenants scenario's second VM: the guest driver loaded, every vCPU busy, on the loaded host CPU."""

    def __init__(self, runner: Runner, cfg: dict[str, Any], out: Path, number: int) -> None:
        self.runner, self.cfg, self.out, self.number = runner, cfg, out, number
        self.qmp = Path(f"/tmp/lab-bench-tenant-r{number}.sock")
        self.vm: Background | None = None
        self.threads: dict[int, int] = {}

    def start(self) -> str:
        """Boots it and waits for its load; '' or why it is not there."""
        cmd = ["taskset", "-c", str(contended_cpu()), *qemu_command(self.cfg, "kvm", "lab.mode=tenant", self.qmp)]
        self.vm = self.runner.start(cmd, f"tenant VM (round {self.number})", tee=self.out / f"level2-console-tenant-r{self.number}.log")
        if not self.vm.wait_for(TENANT_READY, float(self.cfg["kvm_timeout"])):
            return f"the tenant VM did not start its load: {self.vm.output[-300:]}"
        self.threads = pvsched_host.qmp_vcpu_threads(self.qmp)
        return "" if self.threads else "the tenant VM's vCPU threads are unknown"

    def cpu_ns(self) -> int | None:
        """CPU time all the tenant's vCPU threads have run; None unless every one was read."""
        times = [thread_cpu_ns(tid) for tid in self.threads.values()]
        return sum(t for t in times if t is not None) if times and None not in times else None

    def stop(self) -> None:
        if self.vm is not None:
            self.vm.stop(signal.SIGKILL, grace=30)


def contended_cpu() -> int:
    """The host CPU the vCPU threads and one stress-ng worker share."""
    return max(os.sched_getaffinity(0))


def parse_histfile(text: str) -> dict[str, Any]:
    """Summary of a cyclictest --histfile: avg, p50, p99, max (us), samples, overflows."""
    buckets: list[tuple[int, int]] = []
    per_thread: dict[str, list[float]] = {}  # a value per cyclictest thread (-t N: N columns)
    for line in text.splitlines():
        if line.startswith("#"):
            key, _, rest = line[1:].partition(":")
            values = rest.split()
            if values and key.strip() in ("Total", "Avg Latencies", "Max Latencies", "Histogram Overflows", "Min Latencies"):
                with contextlib.suppress(ValueError):
                    per_thread[key.strip()] = [float(v) for v in values]
            continue
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            buckets.append((int(parts[0]), sum(int(c) for c in parts[1:] if c.isdigit())))
    totals = per_thread.get("Total", [])
    summary: dict[str, float] = {}
    if totals:
        summary["Total"] = sum(totals)
    if "Max Latencies" in per_thread:
        summary["Max Latencies"] = max(per_thread["Max Latencies"])
    if "Histogram Overflows" in per_thread:
        summary["Histogram Overflows"] = sum(per_thread["Histogram Overflows"])
    avgs = per_thread.get("Avg Latencies", [])
    if avgs and len(avgs) == len(totals) and sum(totals):
        summary["Avg Latencies"] = round(sum(a * n for a, n in zip(avgs, totals, strict=True)) / sum(totals), 2)
    elif len(avgs) == 1:
        summary["Avg Latencies"] = avgs[0]
    samples = int(summary.get("Total", sum(c for _, c in buckets)))
    overflows = int(summary.get("Histogram Overflows", 0))

    def percentile(q: float) -> float:
        want = q * samples
        seen = 0
        for us, count in buckets:
            seen += count
            if seen >= want and count:
                return float(us)
        return float(summary.get("Max Latencies", buckets[-1][0] if buckets else 0))  # in the overflow

    return {
        "samples": samples,
        "avg_us": summary.get("Avg Latencies", 0.0),
        "p50_us": percentile(0.50),
        "p99_us": percentile(0.99),
        "max_us": summary.get("Max Latencies", 0.0),
        "overflows": overflows,
        "histogram": [[us, c] for us, c in buckets if c],
    }


def irq_bucket_bounds(idx: int) -> tuple[int, int]:
    """[low, high) in us of a bucket of bpf/irq_latency.h's log-linear histogram."""
    if idx < 4:
        return idx, idx + 1
    if idx < 8:
        return 4, 4  # never filled: 4-7 us land in buckets 8-11
    m, f = divmod(idx, 4)
    return (4 + f) << (m - 2), (5 + f) << (m - 2)


def parse_irq_latency(data: dict[str, Any]) -> dict[str, Any] | None:
    """bpf/irq_latency's dump as a side of the bench: injection to VM entry, in us.
    Percentiles are the upper bound of their bucket (at most 25 % above the truth)."""
    count = int(data.get("count", 0))
    if not count:
        return None
    buckets = sorted((int(i), int(c)) for i, c in data["buckets"])

    def percentile(q: float) -> float:
        seen = 0
        for idx, c in buckets:
            seen += c
            if seen >= q * count:
                return float(irq_bucket_bounds(idx)[1])
        return float(data["max_us"])

    return {
        "samples": count,
        "avg_us": round(int(data["sum_us"]) / count, 1),
        "p50_us": percentile(0.50),
        "p99_us": percentile(0.99),
        "max_us": float(data["max_us"]),
        "histogram": [[irq_bucket_bounds(idx)[0], c] for idx, c in buckets],
    }


def parse_guest_windows(console: str) -> dict[str, dict[str, Any]]:
    """Each window's guest histogram, printed between LAB-BENCH-HIST markers naming its mode."""
    found = {}
    for m in re.finditer(r"LAB-BENCH-HIST-BEGIN (\S+)\n(.*?)LAB-BENCH-HIST-END \1", console, re.DOTALL):
        found[m[1]] = parse_histfile("\n".join(line.strip() for line in m[2].splitlines()))
    return found


def kvm_exits(vm_pid: int) -> int | None:
    """Sum of KVM's `exits` counter for one VM, from its debugfs directory."""
    base = Path("/sys/kernel/debug/kvm")
    for d in base.glob(f"{vm_pid}-*"):
        try:
            return int((d / "exits").read_text())
        except (OSError, ValueError):
            return None
    return None


class Window:
    """One mode's window in one round: level 1's side of it."""

    def __init__(self, bench: RoundRun, mode: str) -> None:
        self.bench, self.mode = bench, mode
        self.policy: pvsched_host.PolicyRun | None = None
        self.load: list[Background] = []
        self.host_ct: Background | None = None
        self.irq: Background | None = None
        self.irq_json = bench.out / f"bench-kvm-r{bench.number}-{mode}.json"
        self.hist = bench.out / f"bench-host-r{bench.number}-{mode}.hist"
        self.ready_at: float | None = None
        self.started_at: float | None = None
        self.done_at: float | None = None
        self.exits_at_start: int | None = None
        self.exits_at_end: int | None = None
        self.rows_at_start: list[dict[str, str]] = []
        self.counters: dict[str, float] = {}
        self.tenant_ns: list[int | None] = []  # the tenant's CPU time at the window's start and end
        self.error = ""
        self.withdrawn_at: float | None = None  # when level 1 withdrew a livelocked mode
        self._overdue_watch: threading.Timer | None = None

    def prepare(self) -> None:
        """The mode's host side, all of it in place before the window opens."""
        cfg, runner = self.bench.cfg, self.bench.runner
        secs = int(cfg["duration"]) + int(cfg["settle_s"]) + 60
        if self.mode != "idle":
            # Normal-priority workers pinned to every host CPU, `load_workers` of
            # them on the vCPU's: contended whatever the balancer would do.
            vcpu_cpu = contended_cpu()
            self.load = [
                pvsched_host.start_load(
                    runner, "--cpu", str(int(cfg.get("load_workers", 1)) if cpu == vcpu_cpu else 1),
                    "--taskset", str(cpu), "--timeout", str(secs),
                )
                for cpu in sorted(os.sched_getaffinity(0))
            ]  # fmt: skip
        # pvsched at the kernel's shipped cap; pvsched-nocap with budget = period (the VM's: every vCPU's).
        budget, period, vm_budget = self.bench.shipped_cap
        nocap = self.mode == "pvsched-nocap"
        cap = pvsched_host.Cap(period, period, period * int(cfg["guest_cpus"])) if nocap else pvsched_host.Cap(budget, period, vm_budget)
        cap.apply()
        loader = {"pvsched": cfg["boost_loader"], "pvsched-nocap": cfg["boost_loader"], "scx": cfg["scx_loader"]}.get(self.mode)
        if loader:
            self.policy = pvsched_host.PolicyRun(runner, str(loader), self.bench.out / f"bench-r{self.bench.number}-{self.mode}-stats.json")
            self.error = self.policy.start()
        if self.mode == "static":
            for tid in self.bench.vcpu_threads().values():
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(STATIC_PRIORITY))
        # KVM's own view, the same in every mode: interrupt accepted -> next VM entry.
        self.irq = runner.start(
            [str(cfg["irq_latency"]), "-o", str(self.irq_json)], f"irq latency (round {self.bench.number}, {self.mode})"
        )
        if not self.irq.wait_for("attached", 60, whole_line=True):
            self.error = f"irq_latency did not attach: {self.irq.output[-300:]}"
        self.ready_at = time.monotonic()
        # A mode can livelock the guest before its window opens too (static
        # with an smp guest, during the settle: seen), so the watch starts here.
        cfg = self.bench.cfg
        self._watch(int(cfg["settle_s"]) + int(cfg["duration"]) + OVERDUE_GRACE_S)

    def _watch(self, seconds: float) -> None:
        """Withdraw the mode if the guest has not ended its window `seconds` from now."""
        if self.mode == "idle":
            return
        if self._overdue_watch is not None:
            self._overdue_watch.cancel()
        self._overdue_watch = threading.Timer(seconds, self._overdue)
        self._overdue_watch.daemon = True
        self._overdue_watch.start()

    def start(self) -> None:
        cfg = self.bench.cfg
        if self.irq is not None and self.irq.poll() is None:
            os.kill(self.irq.pid, signal.SIGUSR1)  # count from the window's start
        self.started_at = time.monotonic()
        if self.withdrawn_at is None:
            self._watch(int(cfg["duration"]) + OVERDUE_GRACE_S)
        if self.bench.tenant is not None:
            self.tenant_ns = [self.bench.tenant.cpu_ns()]
        vm_pid = self.bench.vm_pid()
        self.exits_at_start = kvm_exits(vm_pid) if vm_pid else None
        self.rows_at_start = self.bench.kvm_rows()
        self.host_ct = self.bench.runner.start(
            ["cyclictest", "-m", "-p", str(HOST_PRIORITY), "-i", str(int(cfg["interval_us"]) * HOST_INTERVAL_FACTOR),
             "-D", str(cfg["duration"]), "-q", "-h", str(cfg["hist_us"]), f"--histfile={self.hist}"],
            f"host cyclictest (round {self.bench.number}, {self.mode})",
        )  # fmt: skip

    def _overdue(self) -> None:
        """The window outlived its length by OVERDUE_GRACE_S: take the mode away so the guest can go on."""
        if self.done_at is not None:
            return
        self.withdrawn_at = time.monotonic()
        where = "past its end" if self.started_at is not None else "past its planned end, never opened"
        print(f"bench: round {self.bench.number} {self.mode}: the window is {OVERDUE_GRACE_S} s {where}; "
              "withdrawing the mode (livelock)", flush=True)  # fmt: skip
        self._withdraw()

    def _withdraw(self) -> None:
        if self.mode == "static":
            for tid in self.bench.vcpu_threads().values():
                with contextlib.suppress(OSError):
                    os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        elif self.policy is not None:
            self.policy.stop()

    def livelock(self) -> dict[str, float | bool | None] | None:
        """When the mode was withdrawn (seconds after the window opened, or after the mode
        was in place if the window had not opened) and how long the guest took to end it after."""
        if self.withdrawn_at is None:
            return None
        opened = self.started_at is not None and self.started_at <= self.withdrawn_at
        since = self.started_at if opened else self.ready_at
        recovered = round(self.done_at - self.withdrawn_at, 1) if self.done_at is not None else None
        return {
            "withdrawn_after_s": round(self.withdrawn_at - since, 1) if since is not None else None,
            "window_was_open": opened,
            "window_ended_after_s": recovered,
        }

    def done(self) -> None:
        self.done_at = time.monotonic()
        if self._overdue_watch is not None:
            self._overdue_watch.cancel()
        if self.bench.tenant is not None:
            self.tenant_ns.append(self.bench.tenant.cpu_ns())
        if self.irq is not None:
            self.irq.stop(signal.SIGTERM, grace=30)
        vm_pid = self.bench.vm_pid()
        self.exits_at_end = kvm_exits(vm_pid) if vm_pid else None
        before = {r["tid"]: r for r in self.rows_at_start}
        for key in ("boosts", "throttles", "boosted_ns"):
            total = 0
            for row in self.bench.kvm_rows():
                now, then = int(row.get(key, 0)), int(before.get(row["tid"], {}).get(key, 0))
                total += now - then if now >= then else now  # registered again: counted afresh
            self.counters[key] = total

    def teardown(self) -> None:
        if self._overdue_watch is not None:
            self._overdue_watch.cancel()
        if self.host_ct is not None and self.host_ct.wait(int(self.bench.cfg["duration"]) + 60) is None:
            self.host_ct.stop(signal.SIGKILL)
        if self.irq is not None:
            self.irq.stop(signal.SIGTERM, grace=30)
        if self.policy is not None:
            self.policy.stop()
        for proc in self.load:
            proc.stop(signal.SIGKILL)
        if self.mode == "static":
            for tid in self.bench.vcpu_threads().values():
                with contextlib.suppress(OSError):
                    os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        pvsched_host.Cap(*self.bench.shipped_cap).apply()

    def tenant_share(self) -> float | None:
        """The tenant's vCPUs' CPU time per second of the window (1.0: one host CPU's worth)."""
        if len(self.tenant_ns) != 2 or None in self.tenant_ns or self.started_at is None or self.done_at is None:
            return None
        start, end = self.tenant_ns
        seconds = self.done_at - self.started_at
        return round((end - start) / 1e9 / seconds, 4) if seconds > 0 else None  # type: ignore[operator]

    def result(self, guest: dict[str, Any] | None) -> dict[str, Any]:
        host = parse_histfile(self.hist.read_text()) if self.hist.exists() else None
        kvm = None
        with contextlib.suppress(OSError, ValueError, KeyError):
            kvm = parse_irq_latency(json.loads(self.irq_json.read_text()))
        exits = None
        if self.exits_at_start is not None and self.exits_at_end is not None:
            exits = self.exits_at_end - self.exits_at_start
        late = self.ready_at is None or self.started_at is None or self.ready_at > self.started_at
        if self.started_at is None:
            error = self.error or "the window never opened (the guest stopped before it)"
        else:
            error = self.error or ("the mode was not in place when the window opened" if late else "")
        tenant = None
        if self.bench.tenant is not None:
            share = self.tenant_share()
            tenant = {"cpu_share": share} if share is not None else None
            error = error or ("" if tenant else "the tenant's CPU time was not read at both ends of the window")
        return {
            "guest": guest,
            "host": host,
            "kvm": kvm,
            "tenant": tenant,
            "vm_exits": exits,
            "boosts": self.counters.get("boosts"),
            "throttles": self.counters.get("throttles"),
            "boosted_ms": round(self.counters.get("boosted_ns", 0) / 1e6, 1) if self.counters else None,
            "settled_s": round(self.started_at - self.ready_at, 2) if not late else None,  # type: ignore[operator]
            "window_s": round(self.done_at - self.started_at, 1) if self.done_at and self.started_at else None,
            "livelock": self.livelock(),
            "error": error,
        }


class RoundRun:
    """One guest boot that measures every mode once, in the round's order."""

    def __init__(self, runner: Runner, cfg: dict[str, Any], out: Path, number: int, order: list[str],
                 shipped_cap: tuple[int, int, int]) -> None:  # fmt: skip
        self.runner, self.cfg, self.out, self.number, self.order = runner, cfg, out, number, order
        self.shipped_cap = shipped_cap
        self.tenant = Tenant(runner, cfg, out, number) if cfg.get("scenario") == "tenants" else None
        self.qmp = Path(f"/tmp/lab-bench-r{number}.sock")
        self.windows = {mode: Window(self, mode) for mode in order}
        self._threads: dict[int, int] = {}
        self._vm_pid: int | None = None
        self.current: Window | None = None

    def vcpu_threads(self) -> dict[int, int]:
        if not self._threads:
            self._threads = pvsched_host.qmp_vcpu_threads(self.qmp)
        return self._threads

    def vm_pid(self) -> int | None:
        if self._vm_pid is None:
            self._vm_pid = _qemu_pid(self.qmp)
        return self._vm_pid

    def kvm_rows(self) -> list[dict[str, str]]:
        try:
            return pvsched_host.read_kvm_vcpus()
        except pvsched_host.DebugfsUnreadable as exc:
            print(f"bench: {exc}", flush=True)
            return []

    def on_line(self, line: str) -> None:
        m = re.search(r"LAB-BENCH-(PREPARE|START|DONE) (\S+)", line)
        if not m or m[2] not in self.windows:
            return
        window = self.windows[m[2]]
        try:
            if m[1] == "PREPARE":
                if self.current is not None:
                    self.current.teardown()
                self.current = window
                window.prepare()
            elif m[1] == "START":
                window.start()
            else:
                window.done()
                # The mode ends with its window: left in place while the guest
                # sends its histograms, an uncapped mode starved a vCPU holding
                # a lock its sibling spun on (smp, scx, seen) and lost the round.
                window.teardown()
                self.current = None
        except Exception as exc:  # noqa: BLE001 - a window without its setup is reported, the round goes on
            window.error = f"{m[1].lower()}: {exc}"

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        append = (f"lab.mode=bench lab.bench_schedule={','.join(self.order)} lab.bench_secs={cfg['duration']} "
                  f"lab.bench_settle={cfg['settle_s']} lab.bench_interval={cfg['interval_us']} "
                  f"lab.bench_hist={cfg['hist_us']} lab.bench_threads={guest_threads(cfg)}")  # fmt: skip
        start = time.monotonic()
        if self.tenant is not None and (error := self.tenant.start()):
            self.tenant.stop()
            return {"round": self.number, "order": self.order, "boot_ok": False, "reason": error,
                    "seconds": round(time.monotonic() - start, 1), "modes": {}}  # fmt: skip
        # Bounded by its silence, not its length: the guest is quiet through a
        # settle and a window, and a livelocked one until level 1 withdraws the
        # mode (a bound on the whole round, one window's length a mode, timed
        # out a round with two livelocks whose guest had finished: seen).
        quiet = int(cfg["duration"]) + int(cfg["settle_s"]) + OVERDUE_GRACE_S
        boot_cfg = {**cfg, "kvm_timeout": float(cfg["kvm_timeout"]) + quiet}
        # QEMU starts pinned: moving a running vCPU thread between level-1 CPUs
        # stopped the guest's timer under TCG (RCU stalls, seen here).
        pin = ["taskset", "-c", str(contended_cpu())]
        try:
            probe, console = boot_guest(self.runner, boot_cfg, "kvm", self.out, label=f"bench-r{self.number}",
                                        extra_append=append, qmp=self.qmp, watch=self.on_line, prefix=pin,
                                        until_silent=True)  # fmt: skip
        finally:
            if self.current is not None:
                self.current.teardown()
            if self.tenant is not None:
                self.tenant.stop()
        guests = parse_guest_windows(console)
        modes = {mode: w.result(guests.get(mode)) for mode, w in self.windows.items()}
        return {"round": self.number, "order": self.order, "boot_ok": probe.ok, "reason": probe.reason,
                "seconds": round(time.monotonic() - start, 1), "modes": modes}  # fmt: skip


def _qemu_pid(qmp: Path) -> int | None:
    """The pid of the QEMU serving `qmp` (the VM's debugfs directory is named by it)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if str(qmp) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                return int(proc.name)
        except OSError:
            continue
    return None


def run_overhead(runner: Runner, cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    """hackbench and a system-call loop with and without the driver; also KVM exits per guest context switch each way."""
    append = f"lab.mode=overhead lab.overhead_rounds={cfg['overhead_rounds']}"
    driver_args = str(cfg.get("overhead_driver_args") or "")
    if driver_args:  # NAME=VALUE,... (checked by the command line): the guest's insmod takes them
        append += f" lab.overhead_insmod={driver_args}"
    qmp = Path("/tmp/lab-bench-overhead.sock")
    vm: dict[str, int | None] = {"pid": None, "exits": None}
    exits: dict[str, list[int]] = {"without": [], "with": []}

    def on_line(line: str) -> None:
        if "LAB-OVERHEAD-BEGIN " in line:
            if vm["pid"] is None:
                vm["pid"] = _qemu_pid(qmp)
            vm["exits"] = kvm_exits(vm["pid"]) if vm["pid"] else None
        elif "LAB-OVERHEAD " in line and vm["exits"] is not None and vm["pid"]:
            now = kvm_exits(vm["pid"])
            which = line.split("LAB-OVERHEAD ", 1)[1].split()[0]
            if now is not None:
                exits.setdefault(which, []).append(now - vm["exits"])

    # Its rounds print as they go: the timeout bounds its silence, not its number of rounds.
    probe, console = boot_guest(
        runner, cfg, "kvm", out, label="bench-overhead", extra_append=append, qmp=qmp, watch=on_line, until_silent=True
    )
    times: dict[str, list[float]] = {"without": [], "with": []}
    syscalls: dict[str, list[float]] = {"without": [], "with": []}
    switches: dict[str, list[int]] = {"without": [], "with": []}
    for line in console.splitlines():
        if "LAB-OVERHEAD " in line:  # "LAB-OVERHEAD with|without SECONDS SWITCHES"
            which, secs, *rest = line.split("LAB-OVERHEAD ", 1)[1].split()
            times.setdefault(which, []).append(float(secs))
            if rest and rest[0].isdigit():
                switches.setdefault(which, []).append(int(rest[0]))
        elif "LAB-OVERHEAD-SYSCALLS " in line:  # "LAB-OVERHEAD-SYSCALLS with|without SECONDS"
            fields = line.split("LAB-OVERHEAD-SYSCALLS ", 1)[1].split()
            if len(fields) == 2:  # no seconds when the loop failed: that round has no figure
                syscalls.setdefault(fields[0], []).append(float(fields[1]))
    result: dict[str, Any] = {"boot_ok": probe.ok, "boot_reason": probe.reason, "rounds_planned": int(cfg["overhead_rounds"]),
                              "driver_args": driver_args, "seconds": times, "syscall_seconds": syscalls, "exits": exits,
                              "switches": switches}  # fmt: skip
    if times["without"] and times["with"]:
        best_without, best_with = min(times["without"]), min(times["with"])
        result["overhead_pct"] = round((best_with - best_without) / best_without * 100, 2)
    result.update(exits_per_switch(exits, switches))
    return result


def exits_per_switch(exits: dict[str, list[int]], switches: dict[str, list[int]]) -> dict[str, float]:
    """KVM exits per guest context switch with and without the driver, and the difference.

    The driver writes the area on every context switch; the difference is
    what those writes cost in exits (designed to be 0: plain stores)."""
    rates = {}
    for which in ("without", "with"):
        if exits.get(which) and switches.get(which) and len(exits[which]) == len(switches[which]) and sum(switches[which]):
            rates[which] = sum(exits[which]) / sum(switches[which])
    if len(rates) < 2:
        return {}
    return {
        "exits_per_switch_without": round(rates["without"], 4),
        "exits_per_switch_with": round(rates["with"], 4),
        "extra_exits_per_switch": round(rates["with"] - rates["without"], 4),
    }


def main(config_path: str) -> int:
    cfg: dict[str, Any] = json.loads(Path(config_path).read_text())
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    print(LEVEL1_READY, flush=True)
    watchdog.start(float(cfg.get("watchdog_s", 600)))  # where it is, if it hangs
    runner = Runner(out / "logs-level1")
    pvsched_host.observe_above_boosts()
    shipped_cap = (*pvsched_host.read_cap(), pvsched_host.read_vm_budget())
    results: dict[str, Any] = {"shipped_cap_us": list(shipped_cap), "scenario": cfg.get("scenario", "single"),
                               "guest_cpus": int(cfg["guest_cpus"]), "warmup_rounds": int(cfg["warmup"]), "rounds": []}  # fmt: skip
    # The host chose the rounds' orders (lab.bench_stats.round_orders).
    for number, order in enumerate(cfg["orders"]):
        print(f"bench: round {number} ({'warmup' if number < int(cfg['warmup']) else 'measured'}): {' '.join(order)}", flush=True)
        results["rounds"].append(RoundRun(runner, cfg, out, number, order, shipped_cap).run())
        (out / "bench-level1.json").write_text(json.dumps(results, indent=2) + "\n")
    if cfg.get("overhead_rounds"):
        print("bench: overhead", flush=True)
        results["overhead"] = run_overhead(runner, cfg, out)
    (out / "bench-level1.json").write_text(json.dumps(results, indent=2) + "\n")
    print(LEVEL1_DONE, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
