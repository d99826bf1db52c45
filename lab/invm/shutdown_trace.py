"""Level 1's witness of a level-2 guest that ends without a word.

QEMU exits 0 both when the guest triple-faults (KVM reports a shutdown
exit; with -no-reboot QEMU ends instead of resetting) and when the guest
asks for a reset itself. KVM's `kvm_exit` tracepoint, filtered to shutdown
exits (SVM_EXIT_SHUTDOWN, VMX's EXIT_REASON_TRIPLE_FAULT), tells the two
apart and names the vCPU and its RIP, which the guest's System.map turns
into a function. Armed before each boot, read after one that failed.

Under SVM a kprobe on KVM's shutdown handler also reads the guest's state
from the VMCB, where the CPU (here QEMU's emulated SVM) saved it at the
exit and before KVM clears it: RIP, RSP, CR2 (the last page fault's
address), CR3, CPL, the IDT's and TSS's bases and the event being
delivered (EXITINTINFO), and the root of level 1's nested page tables
for the guest (N_CR3, which lab.invm.reset_watch walks). A triple fault
of a guest's user code (the stress suite's, 2026-12-04/05) says nothing
else of what could not be delivered.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from lab.invm import btf_offsets
from lab.runner import Runner
from lab.symbols import SymbolMap

TRACEFS_DIRS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
EVENT = Path("events/kvm/kvm_exit")
# KVM_ISA_VMX 1, KVM_ISA_SVM 2 (arch/x86/kvm/trace.h); SVM_EXIT_SHUTDOWN 0x7f, EXIT_REASON_TRIPLE_FAULT 2.
SHUTDOWN_FILTER = "(isa == 2 && exit_reason == 0x7f) || (isa == 1 && exit_reason == 2)"
# "... kvm_exit: vcpu 1 reason shutdown rip 0xffffffff81001234 info1 ..."
_EXIT = re.compile(r"kvm_exit: vcpu (\d+) reason (\S+) rip (0x[0-9a-f]+)")
# The guest's state at a shutdown exit (SVM): a kprobe on the handler,
# before it clears the VMCB (arch/x86/kvm/svm/svm.c, shutdown_interception).
STATE_PROBE = "lab_shutdown_state"
STATE_HANDLER = "shutdown_interception"
# (name, offset in struct vmcb, fetch type): arch/x86/include/asm/svm.h,
# the control area's, then the save area's at 0x400.
VMCB_FIELDS = (("rip", 0x578, "x64"), ("rsp", 0x5D8, "x64"), ("cr2", 0x640, "x64"), ("cr3", 0x550, "x64"),
               ("cpl", 0x4CB, "u8"), ("idt", 0x488, "x64"), ("tr", 0x498, "x64"),
               ("exitintinfo", 0x88, "x32"), ("exitinfo1", 0x78, "x64"), ("ncr3", 0xB0, "x64"))  # fmt: skip
# "... lab_shutdown_state: (shutdown_interception+0x0/0x90) rip=0x528293 rsp=..."
_STATE = re.compile(STATE_PROBE + r": \([^)]*\) (.*?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class ShutdownExit:
    vcpu: int
    reason: str
    rip: int
    state: str = ""  # the VMCB's fields at the exit, as the probe printed them

    def describe(self, symbols: SymbolMap | None = None) -> str:
        where = f" ({symbols.name(self.rip)})" if symbols else ""
        state = f", its state {self.state}" if self.state else ""
        return f"vCPU {self.vcpu} {self.reason} at {self.rip:#x}{where}{state}"


def tracefs(runner: Runner) -> Path | None:
    """Where tracefs is, mounting it if need be; None if this kernel has no KVM trace events."""
    for base in TRACEFS_DIRS:
        if (base / EVENT).is_dir():
            return base
    runner.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS_DIRS[0])], "mount tracefs", check=False)
    return TRACEFS_DIRS[0] if (TRACEFS_DIRS[0] / EVENT).is_dir() else None


def arm(base: Path, btf: Path = btf_offsets.VMLINUX_BTF) -> str:
    """Record shutdown exits only, and the guest's state at each, from an
    empty buffer. Returns why the state is not recorded ('' when it is)."""
    (base / EVENT / "filter").write_text(SHUTDOWN_FILTER + "\n")
    (base / EVENT / "enable").write_text("1\n")
    missing = arm_state_probe(base, btf)
    (base / "trace").write_text("")
    return missing


def arm_state_probe(base: Path, btf: Path = btf_offsets.VMLINUX_BTF) -> str:
    """The kprobe that prints VMCB_FIELDS at each shutdown exit, placed once
    per boot of this kernel; '' or why it is not (no SVM, no kprobes)."""
    event = base / "events" / "lab" / STATE_PROBE
    if not event.is_dir():
        try:
            vmcb = btf_offsets.running_member_offset("vcpu_svm", "vmcb", btf)
        except (OSError, ValueError) as exc:
            return f"the kernel's BTF unread: {exc}"
        if vmcb is None:
            return "no struct vcpu_svm in the kernel's BTF (no SVM)"
        fetch = " ".join(f"{name}=+{offset:#x}(+{vmcb:#x}(%di)):{kind}" for name, offset, kind in VMCB_FIELDS)
        try:
            # O_APPEND without Python's "a" mode, whose seek to the end tracefs refuses (EINVAL).
            fd = os.open(base / "kprobe_events", os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, f"p:lab/{STATE_PROBE} {STATE_HANDLER} {fetch}\n".encode())
            finally:
                os.close(fd)
        except OSError as exc:
            return f"kprobe on {STATE_HANDLER} not placed: {exc}"
    try:
        (event / "enable").write_text("1\n")
    except OSError as exc:
        return f"kprobe on {STATE_HANDLER} not enabled: {exc}"
    return ""


def collect(base: Path) -> list[ShutdownExit]:
    """The shutdown exits recorded since `arm`; the buffer is emptied."""
    exits = parse((base / "trace").read_text())
    (base / "trace").write_text("")
    return exits


def parse(trace: str) -> list[ShutdownExit]:
    """The shutdown exits in a trace, each with the state the probe printed
    right after it (the handler runs after the exit's tracepoint), in order."""
    states = [m[1] for m in _STATE.finditer(trace)]
    exits = [ShutdownExit(int(m[1]), m[2], int(m[3], 16)) for m in _EXIT.finditer(trace)]
    if len(states) != len(exits):
        return exits  # one missed: which state is whose is not known
    return [ShutdownExit(e.vcpu, e.reason, e.rip, state) for e, state in zip(exits, states, strict=True)]


def verdict(exits: list[ShutdownExit], symbols: SymbolMap | None = None) -> str:
    """What KVM saw, for a guest that ended early."""
    if not exits:
        return "KVM saw no shutdown exit (not a triple fault: a reset the guest asked for, or QEMU's own end)"
    return "KVM saw a shutdown exit (triple fault): " + "; ".join(e.describe(symbols) for e in exits)
