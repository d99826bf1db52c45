"""Policies that survive churn: with the boost policy attached, create and
kill tiny VMs (lab/invm/tiny_vmm.py) until more distinct vCPU threads have
come and gone than the policy's per-vCPU map holds (PVSCHED_MAX_VCPUS in
bpf/pvsched_stats.h), then require the last VM's vCPUs to be boosted, and
every killed VM to be gone from KVM's list."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lab.invm import pvsched_host
from lab.invm.vcpu_sampler import thread_policy
from lab.ktap import Case
from lab.runner import Runner

NAME = "pvsched_policy_boosts_after_vcpu_churn"
VMS, VCPUS_PER_VM = 11, 32  # 352 vCPU threads, beyond the 256 a policy's map held before
# Bounds on waiting for the kernel: generous for level 1 under TCG, and
# only reached when something is broken (a live run waits well under 1 s).
REGISTER_WAIT_S, BOOST_WAIT_S, DESTROY_WAIT_S = 60.0, 30.0, 60.0
POLL_S = 0.1


def await_true(what: Callable[[], bool], timeout: float, poll: float | None = None) -> bool:
    """Whether `what` holds within `timeout` s, checked every `poll` s."""
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() >= deadline:
            return what()
        time.sleep(POLL_S if poll is None else poll)
    return True


def rows_of(vm_pid: int) -> list[dict[str, str]]:
    return [r for r in pvsched_host.read_kvm_vcpus() if r.get("vm_pid") == str(vm_pid)]


def running_tids(output: str) -> list[int]:
    """The vCPU thread ids of a tiny VM's `TINY-VMM running` line."""
    line = next(ln for ln in output.splitlines() if ln.startswith("TINY-VMM running"))
    return [int(t) for t in line.split()[2:]]


def unboosted(tids: list[int]) -> list[int]:
    return [t for t in tids if thread_policy(t) != pvsched_host.SCHED_FIFO]


def churn_case(runner: Runner, loader: str, out: Path, vms: int = VMS, vcpus: int = VCPUS_PER_VM) -> Case:
    policy = pvsched_host.PolicyRun(runner, loader, out / "pvsched-churn-stats.json")
    if err := policy.start():
        return Case(NAME, "level1", "failed", f"policy did not attach: {err}")
    try:
        return Case(NAME, "level1", *_churn(runner, vms, vcpus))
    except pvsched_host.DebugfsUnreadable as exc:
        return Case(NAME, "level1", "failed", str(exc))
    finally:
        policy.stop()


def _churn(runner: Runner, vms: int, vcpus: int) -> tuple[str, str]:
    threads = 0
    for i in range(vms):
        last = i == vms - 1
        error = _one_vm(runner, f"VM {i}", vcpus, threads, must_boost=last)
        if error:
            return "failed", error
        threads += vcpus
    return "passed", f"{threads} vCPU threads in {vms} VMs; the last VM's all boosted; every VM left KVM's list when killed"


def _one_vm(runner: Runner, label: str, vcpus: int, threads_before: int, must_boost: bool) -> str:
    """Start a tiny VM, see all its vCPUs registered (and boosted), kill it,
    see it gone from KVM; what went wrong, or ""."""
    vm = runner.start([sys.executable, "-m", "lab.invm.tiny_vmm", str(vcpus)], f"tiny {label}")
    try:
        if not vm.wait_for("TINY-VMM running", REGISTER_WAIT_S):
            return f"{label} did not start: {vm.output[-300:]}"
        tids = running_tids(vm.output)
        if not await_true(lambda: len(rows_of(vm.pid)) == vcpus, REGISTER_WAIT_S):
            return f"{label}: {len(rows_of(vm.pid))} of {vcpus} vCPUs registered in {REGISTER_WAIT_S:.0f} s"
        if must_boost and not await_true(lambda: not unboosted(tids), BOOST_WAIT_S):
            return (f"after {threads_before + vcpus} vCPU threads, {len(unboosted(tids))} of the last VM's {vcpus} "
                    f"were not boosted in {BOOST_WAIT_S:.0f} s (its guest runs an RT task)")  # fmt: skip
    finally:
        vm.stop(signal.SIGKILL, grace=DESTROY_WAIT_S)
    if not await_true(lambda: not rows_of(vm.pid), DESTROY_WAIT_S):
        return f"{label} killed, {len(rows_of(vm.pid))} of its vCPUs still registered in KVM after {DESTROY_WAIT_S:.0f} s"
    return ""
