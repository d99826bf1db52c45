"""Destroy VMs in the middle of boosts and throttles: tiny VMs
(lab/invm/tiny_vmm.py) whose two vCPUs spin with an RT task announced, so
the boost policy boosts them and KVM throttles them at the test cap, are
killed the moment KVM shows a vCPU boosted, or throttled (its cap timer
armed either way, the apply work queued or just run). KVM must release every
vCPU, and the lab's splat scan of level 1 (KASAN and lockdep under the
debug profile) sees what the teardown got wrong."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from lab.invm import pvsched_host
from lab.invm.vcpu_churn import await_true, rows_of
from lab.ktap import Case
from lab.runner import Runner

NAME = "pvsched_destroy_while_boosted_and_throttled"
ROUNDS, VCPUS = 8, 2
# A budget that runs out within a few ticks, in a short period: every round sees both states.
BUDGET_US, PERIOD_US = 20_000, 100_000
STATES_WAIT_S, DESTROY_WAIT_S = 30.0, 60.0
FAST_POLL_S = 0.005  # a boost lasts 20 ms here


def destroy_case(runner: Runner, loader: str, out: Path, rounds: int = ROUNDS) -> Case:
    return pvsched_host.case_under_test_cap(NAME, runner, loader, out / "pvsched-teardown-stats.json",
                                            (BUDGET_US, PERIOD_US), lambda: _rounds(runner, rounds))  # fmt: skip


def _rounds(runner: Runner, rounds: int) -> tuple[str, str]:
    """Even rounds kill a VM the moment KVM shows a vCPU boosted (cap timer
    armed for the budget), odd rounds one throttled (armed for the period's end)."""
    at_kill: list[str] = []
    for i in range(rounds):
        states, error = _kill_when(runner, f"round {i}", "boosted" if i % 2 == 0 else "throttled")
        if error:
            return "failed", error
        at_kill.append("+".join(states))
    return "passed", f"{rounds} VMs killed with their vCPUs {', '.join(at_kill)}; every vCPU released"


def _kill_when(runner: Runner, label: str, want: str) -> tuple[list[str], str]:
    """Kill a spinning tiny VM once a vCPU is `want` after a throttle; its
    vCPUs' states then, and what went wrong ("" if nothing)."""
    vm = runner.start([sys.executable, "-m", "lab.invm.tiny_vmm", str(VCPUS), "spin"], f"spinning tiny VM, {label}")
    states: list[str] = []

    def caught() -> bool:
        rows = rows_of(vm.pid)
        states[:] = sorted(r["state"] for r in rows)
        # Both vCPUs have been through a boost and a throttle, and one is `want` now.
        return len(rows) == VCPUS and all(int(r["throttles"]) for r in rows) and want in states

    try:
        if not vm.wait_for("TINY-VMM running", STATES_WAIT_S):
            return states, f"{label}: the VM did not start: {vm.output[-300:]}"
        if not await_true(caught, STATES_WAIT_S, poll=FAST_POLL_S):
            return states, f"{label}: no vCPU {want} after a throttle in {STATES_WAIT_S:.0f} s: {rows_of(vm.pid)}"
    finally:
        vm.stop(signal.SIGKILL, grace=DESTROY_WAIT_S)
    if not await_true(lambda: not rows_of(vm.pid), DESTROY_WAIT_S):
        return states, f"{label}: killed, {len(rows_of(vm.pid))} vCPUs still registered after {DESTROY_WAIT_S:.0f} s"
    return states, ""
