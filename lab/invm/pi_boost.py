"""A boost never takes away a priority-inheritance boost: a tiny VM
(lab/invm/tiny_vmm.py `spin pi-held`) whose vCPU thread holds a PI futex
that a SCHED_FIFO 70 thread waits for announces an RT task, so the boost
policy boosts the thread at FIFO 10 and KVM throttles and restores it at
the test cap, cycle after cycle. Through all of it the thread's effective
priority (/proc's, PI boost included) must stay FIFO 70's: a boost or a
restore that ignores the PI boost moves it to FIFO 10's or a nice value's."""

from __future__ import annotations

import collections
import signal
import sys
import time
from pathlib import Path

from lab.invm import pvsched_host
from lab.invm.tiny_vmm import PI_WAITER_PRIORITY
from lab.invm.vcpu_churn import rows_of, running_tids
from lab.invm.vcpu_sampler import thread_priority
from lab.ktap import Case
from lab.runner import Runner

NAME = "pvsched_boost_keeps_pi_boost"
# A boost of 50 ms CPU, then a throttle to the end of 500 ms: 3 cycles take
# 1.5 s, long enough to sample the priority often in each state (with a
# 100 ms period, 7 cycles passed between two samples of a loaded level 1).
BUDGET_US, PERIOD_US = 50_000, 500_000
CYCLES = 3  # boosts and throttles KVM must count while the thread is watched
MIN_SAMPLES = 20  # a verdict on fewer samples of the priority is no verdict
START_WAIT_S, CYCLES_WAIT_S = 30.0, 60.0
POLL_S = 0.005
ROWS_EVERY = 10  # KVM's debugfs is read every this many samples: it is slow to parse
PI_PRIORITY = -1 - PI_WAITER_PRIORITY  # /proc's priority of a thread running at FIFO 70


def pi_case(runner: Runner, loader: str, out: Path) -> Case:
    return pvsched_host.case_under_test_cap(NAME, runner, loader, out / "pvsched-pi-stats.json", (BUDGET_US, PERIOD_US),
                                            lambda: _watch(runner), errors=(OSError, ValueError))  # fmt: skip


def _watch(runner: Runner) -> tuple[str, str]:
    """Sample the vCPU thread's priority until KVM counted CYCLES boosts and throttles."""
    vm = runner.start([sys.executable, "-m", "lab.invm.tiny_vmm", "1", "spin", "pi-held"], "PI-boosted tiny VM")
    seen: collections.Counter[int] = collections.Counter()
    row: dict[str, str] = {}
    try:
        if not vm.wait_for("TINY-VMM running", START_WAIT_S):
            return "failed", f"the VM did not start: {vm.output[-300:]}"
        tid = running_tids(vm.output)[0]
        deadline = time.monotonic() + CYCLES_WAIT_S
        while time.monotonic() < deadline:
            seen[thread_priority(tid)] += 1
            if sum(seen.values()) % ROWS_EVERY == 0:
                rows = rows_of(vm.pid)
                row = rows[0] if rows else {}
                if enough(seen, row):
                    break
            time.sleep(POLL_S)
    finally:
        vm.stop(signal.SIGKILL)
    return judge(seen, row)


def enough(seen: collections.Counter[int], row: dict[str, str]) -> bool:
    """KVM counted the cycles and the sampler saw enough of them. Both, not the
    first: a sampler starved beside the FIFO 70 thread took 10 samples while
    KVM ran its 3 cycles (run 20261203T111243Z-0345) and stopped there."""
    cycles = bool(row) and int(row["boosts"]) >= CYCLES and int(row["throttles"]) >= CYCLES
    return cycles and sum(seen.values()) >= MIN_SAMPLES


def judge(seen: collections.Counter[int], row: dict[str, str]) -> tuple[str, str]:
    """The verdict from the priorities sampled (priority -> samples) and KVM's last row for the vCPU."""
    cycles = f"boosts {row.get('boosts')}, throttles {row.get('throttles')}, kept_rt {row.get('kept_rt')}"
    prios = ", ".join(f"{p}: {n}" for p, n in sorted(seen.items())) or "none"
    if not row or int(row["boosts"]) < CYCLES or int(row["throttles"]) < CYCLES:
        return "failed", f"KVM counted {cycles} in {CYCLES_WAIT_S:.0f} s (want {CYCLES} each); priorities sampled {prios}"
    if sum(seen.values()) < MIN_SAMPLES:
        return "failed", f"{sum(seen.values())} samples of the priority ({prios}), fewer than {MIN_SAMPLES}; {cycles}"
    if set(seen) != {PI_PRIORITY}:
        return "failed", f"the PI-boosted thread's priority left {PI_PRIORITY} (FIFO {PI_WAITER_PRIORITY}): samples {prios}; {cycles}"
    return "passed", f"{sum(seen.values())} samples all at {PI_PRIORITY} (FIFO {PI_WAITER_PRIORITY}) through {cycles}"
