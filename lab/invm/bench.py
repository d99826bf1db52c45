"""The latency benchmark inside level 1 (`nox -s bench`). Stdlib only.

For each mode, one guest boot: the guest runs cyclictest at an RT priority
while level 1 runs its own cyclictest at the same time (what the host pays)
and, except in `idle`, stress-ng on every host CPU at normal priority:

  idle     no host load: the floor
  vanilla  host loaded, no policy
  pvsched  host loaded, the boost policy attached
  scx      host loaded, the sched_ext policy attached
  static   host loaded, every vCPU thread made SCHED_FIFO by hand

plus an `overhead` boot on an idle host: a guest throughput workload
(hackbench) with and without the guest driver loaded. Every boot has a
timeout. Results go to <out>/bench-level1.json.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from lab.invm import pvsched_host, watchdog
from lab.invm.level1 import boot_guest
from lab.protocol import BENCH_MODES, LEVEL1_DONE, LEVEL1_READY
from lab.runner import Background, Runner

MODES = BENCH_MODES
STATIC_PRIORITY = 10  # the same priority the boost policy uses
# The host's own real-time work, below the boost priority: what a boost costs it.
HOST_PRIORITY = 5
# The host probe wakes 4x less often than the guest's: under TCG a 2 kHz RT
# task pinned beside the vCPU starved it into RCU stalls (seen here).
HOST_INTERVAL_FACTOR = 4


def contended_cpu() -> int:
    """The host CPU the vCPU threads and one stress-ng worker share."""
    return max(os.sched_getaffinity(0))


def parse_histfile(text: str) -> dict[str, Any]:
    """Summary of a cyclictest --histfile: avg, p50, p99, max (us), samples, overflows."""
    buckets: list[tuple[int, int]] = []
    summary: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            key, _, rest = line[1:].partition(":")
            values = rest.split()
            if values and key.strip() in ("Total", "Avg Latencies", "Max Latencies", "Histogram Overflows", "Min Latencies"):
                summary[key.strip()] = float(values[0])
            continue
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            buckets.append((int(parts[0]), int(parts[1])))
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


def parse_guest_result(console: str) -> dict[str, Any] | None:
    """The guest prints its histfile between LAB-BENCH-HIST markers."""
    begin, end = "LAB-BENCH-HIST-BEGIN", "LAB-BENCH-HIST-END"
    if begin not in console or end not in console:
        return None
    body = console.split(begin, 1)[1].split(end, 1)[0]
    return parse_histfile("\n".join(line.strip() for line in body.splitlines()))


def kvm_exits(vm_pid: int) -> int | None:
    """Sum of KVM's `exits` counter for one VM, from its debugfs directory."""
    base = Path("/sys/kernel/debug/kvm")
    for d in base.glob(f"{vm_pid}-*"):
        try:
            return int((d / "exits").read_text())
        except (OSError, ValueError):
            return None
    return None


class ModeRun:
    """What level 1 does around one guest boot in one mode."""

    def __init__(self, runner: Runner, mode: str, cfg: dict[str, Any], out: Path) -> None:
        self.runner, self.mode, self.cfg, self.out = runner, mode, cfg, out
        self.policy: pvsched_host.PolicyRun | None = None
        self.load: list[Background] = []
        self.host_ct: Background | None = None
        self.hist = out / f"bench-host-{mode}.hist"
        self.qmp = Path(f"/tmp/lab-bench-{mode}.sock")
        self.exits_at_start: int | None = None
        self.exits_at_end: int | None = None
        self.boosts: int = 0
        self.throttles: int = 0
        self.boosted_ms: float = 0.0
        self.vm_pid: int | None = None
        self.error = ""

    def before_boot(self) -> None:
        secs = int(self.cfg["duration"])
        if self.mode != "idle":
            # Normal-priority workers pinned to every host CPU, `load_workers` of
            # them on the vCPU's: contended whatever the balancer would do.
            vcpu_cpu = contended_cpu()
            self.load = [
                pvsched_host.start_load(
                    self.runner,
                    "--cpu",
                    str(int(self.cfg.get("load_workers", 1)) if cpu == vcpu_cpu else 1),
                    "--taskset",
                    str(cpu),
                    "--timeout",
                    str(secs * 4 + 120),
                )  # fmt: skip
                for cpu in sorted(os.sched_getaffinity(0))
            ]
        loader = {"pvsched": self.cfg["boost_loader"], "scx": self.cfg["scx_loader"]}.get(self.mode)
        if loader:
            self.policy = pvsched_host.PolicyRun(self.runner, str(loader), self.out / f"bench-{self.mode}-stats.json")
            self.error = self.policy.start()

    def on_line(self, line: str) -> None:
        if "LAB-BENCH-START" in line:
            threads = pvsched_host.qmp_vcpu_threads(self.qmp)
            if self.mode == "static":
                for tid in threads.values():
                    os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(STATIC_PRIORITY))
            self.vm_pid = _qemu_pid(self.qmp)
            self.exits_at_start = kvm_exits(self.vm_pid) if self.vm_pid else None
            self.host_ct = self.runner.start(
                ["cyclictest", "-m", "-p", str(HOST_PRIORITY), "-i", str(int(self.cfg["interval_us"]) * HOST_INTERVAL_FACTOR),
                 "-D", str(self.cfg["duration"]), "-q", "-h", str(self.cfg["hist_us"]), f"--histfile={self.hist}"],
                f"host cyclictest ({self.mode})",
            )  # fmt: skip
        elif "LAB-BENCH-DONE" in line:
            self.exits_at_end = kvm_exits(self.vm_pid) if self.vm_pid else None
            try:
                rows = pvsched_host.read_kvm_vcpus()
            except pvsched_host.DebugfsUnreadable as exc:
                print(f"bench: {exc}", flush=True)
                rows = []
            self.boosts = sum(int(r.get("boosts", 0)) for r in rows)
            # Throttled = the kernel's cap cut a boost short: the guest's RT
            # task then competes with the host load again.
            self.throttles = sum(int(r.get("throttles", 0)) for r in rows)
            self.boosted_ms = round(sum(int(r.get("boosted_ns", 0)) for r in rows) / 1e6, 1)

    def after_boot(self) -> dict[str, Any]:
        if self.host_ct is not None and self.host_ct.wait(int(self.cfg["duration"]) + 60) is None:
            self.host_ct.stop(signal.SIGKILL)
        if self.policy is not None:
            self.policy.stop()
        for proc in self.load:
            proc.stop(signal.SIGKILL)
        host = parse_histfile(self.hist.read_text()) if self.hist.exists() else None
        exits = None
        if self.exits_at_start is not None and self.exits_at_end is not None:
            exits = self.exits_at_end - self.exits_at_start
        return {
            "host": host,
            "vm_exits": exits,
            "boosts": self.boosts,
            "throttles": self.throttles,
            "boosted_ms": self.boosted_ms,
            "error": self.error,
        }


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


def run_mode(runner: Runner, cfg: dict[str, Any], out: Path, mode: str) -> dict[str, Any]:
    pvsched_host.observe_above_boosts()
    run = ModeRun(runner, mode, cfg, out)
    run.before_boot()
    driver = 1 if mode in ("pvsched", "scx") else 0
    append = (f"lab.mode=bench lab.bench_secs={cfg['duration']} lab.bench_interval={cfg['interval_us']} "
              f"lab.bench_hist={cfg['hist_us']} lab.bench_driver={driver}")  # fmt: skip
    start = time.monotonic()
    # boot + the measurement + the histogram over a slow serial console
    cfg = {**cfg, "kvm_timeout": float(cfg["kvm_timeout"]) + 3 * int(cfg["duration"]) + 60}
    # QEMU starts pinned: moving a running vCPU thread between level-1 CPUs
    # stopped the guest's timer under TCG (RCU stalls, seen here).
    pin = ["taskset", "-c", str(contended_cpu())]
    probe, console = boot_guest(runner, cfg, "kvm", out, label=f"bench-{mode}", extra_append=append,
                                qmp=run.qmp, watch=run.on_line, prefix=pin)  # fmt: skip
    result = run.after_boot()
    result["guest"] = parse_guest_result(console)
    result["boot_ok"] = probe.ok
    result["seconds"] = round(time.monotonic() - start, 1)
    if not probe.ok:
        result["error"] = (result["error"] + " " + probe.reason).strip()
    return result


def run_overhead(runner: Runner, cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    """hackbench with and without the driver; also KVM exits per guest context switch each way."""
    append = f"lab.mode=overhead lab.overhead_rounds={cfg['overhead_rounds']}"
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

    probe, console = boot_guest(runner, cfg, "kvm", out, label="bench-overhead", extra_append=append, qmp=qmp, watch=on_line)
    times: dict[str, list[float]] = {"without": [], "with": []}
    switches: dict[str, list[int]] = {"without": [], "with": []}
    for line in console.splitlines():
        if "LAB-OVERHEAD " in line:  # "LAB-OVERHEAD with|without SECONDS SWITCHES"
            which, secs, *rest = line.split("LAB-OVERHEAD ", 1)[1].split()
            times.setdefault(which, []).append(float(secs))
            if rest and rest[0].isdigit():
                switches.setdefault(which, []).append(int(rest[0]))
    result: dict[str, Any] = {"boot_ok": probe.ok, "seconds": times, "exits": exits, "switches": switches}
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
    results: dict[str, Any] = {"modes": {}}
    for mode in cfg["modes"]:
        print(f"bench: mode {mode}", flush=True)
        results["modes"][mode] = run_mode(runner, cfg, out, mode)
    if cfg.get("overhead_rounds"):
        print("bench: overhead", flush=True)
        results["overhead"] = run_overhead(runner, cfg, out)
    (out / "bench-level1.json").write_text(json.dumps(results, indent=2) + "\n")
    print(LEVEL1_DONE, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
