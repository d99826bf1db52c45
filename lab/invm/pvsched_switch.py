"""Who may turn pvsched off: the host (kvm.pvsched, off by default, which
the lab turns on) and each VMM for its VM (KVM_CAP_PVSCHED, before its
vCPUs exist). Checked with tiny VMs (lab/invm/tiny_vmm.py): where pvsched
is off, every vCPU's registration must fault and KVM list none of them;
beside them, the same VM with pvsched on registers."""

from __future__ import annotations

import fcntl
import os
import signal
import sys

from lab.invm import pvsched_host, tiny_vmm
from lab.invm.vcpu_churn import await_true, rows_of
from lab.ktap import Case
from lab.runner import Runner

VCPUS = 2
WAIT_S = 60.0  # bound on a tiny VM's vCPUs reaching their registration; they do in well under 1 s


def capability() -> int:
    """KVM_CHECK_EXTENSION(KVM_CAP_PVSCHED) on /dev/kvm."""
    fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    try:
        return fcntl.ioctl(fd, tiny_vmm.KVM_CHECK_EXTENSION, tiny_vmm.KVM_CAP_PVSCHED)
    finally:
        os.close(fd)


def tiny_vm_outcome(runner: Runner, label: str, *args: str) -> str:
    """`registered`, `refused` (every vCPU faulted, none listed) or what went wrong."""
    vm = runner.start([sys.executable, "-m", "lab.invm.tiny_vmm", str(VCPUS), *args], label)
    try:

        def settled() -> bool:
            return len(rows_of(vm.pid)) == VCPUS or vm.output.count("TINY-VMM refused") == VCPUS or vm.poll() is not None

        await_true(settled, WAIT_S)
        rows, refused = len(rows_of(vm.pid)), vm.output.count("TINY-VMM refused")
        if vm.poll() is not None:
            return f"{label}: exited {vm.poll()}: {vm.output[-300:]}"
        if rows == VCPUS and not refused:
            return "registered"
        if refused == VCPUS and not rows:
            return "refused"
        return f"{label}: {rows} vCPUs listed by KVM, {refused} refused, after {WAIT_S:.0f} s"
    finally:
        vm.stop(signal.SIGKILL, grace=WAIT_S)


def per_vm(runner: Runner) -> tuple[bool, str]:
    cap = capability()
    on = tiny_vm_outcome(runner, "tiny VM, pvsched on")
    off = tiny_vm_outcome(runner, "tiny VM, KVM_CAP_PVSCHED off", "pvsched-off")
    ok = cap == 1 and on == "registered" and off == "refused"
    return ok, f"KVM_CHECK_EXTENSION(KVM_CAP_PVSCHED) {cap} (want 1); a VM that keeps it: {on}; one that turned it off: {off}"


def host_switch(runner: Runner) -> tuple[bool, str]:
    try:
        pvsched_host.set_kvm_param("pvsched", 0)
        cap = capability()
        off = tiny_vm_outcome(runner, "tiny VM, kvm.pvsched=0")
    finally:
        pvsched_host.set_kvm_param("pvsched", 1)
    on = tiny_vm_outcome(runner, "tiny VM, kvm.pvsched=1 again")
    ok = cap == 0 and off == "refused" and on == "registered"
    return ok, f"with kvm.pvsched=0: KVM_CHECK_EXTENSION {cap} (want 0), a VM's registration {off}; switched on again: {on}"


CHECKS = {"pvsched_vmm_turns_it_off_per_vm": per_vm, "pvsched_host_switch_turns_it_off": host_switch}


def cases(runner: Runner) -> list[Case]:
    out = []
    for name, check in CHECKS.items():
        try:
            ok, why = check(runner)
        except (OSError, pvsched_host.DebugfsUnreadable) as exc:
            ok, why = False, str(exc)
        out.append(Case(name, "level1", "passed" if ok else "failed", why))
    return out
