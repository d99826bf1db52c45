"""Level 1's witness of a level-2 guest that ends without a word.

QEMU exits 0 both when the guest triple-faults (KVM reports a shutdown
exit; with -no-reboot QEMU ends instead of resetting) and when the guest
asks for a reset itself. KVM's `kvm_exit` tracepoint, filtered to shutdown
exits (SVM_EXIT_SHUTDOWN, VMX's EXIT_REASON_TRIPLE_FAULT), tells the two
apart and names the vCPU and its RIP, which the guest's System.map turns
into a function. Armed before each boot, read after one that failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lab.runner import Runner
from lab.symbols import SymbolMap

TRACEFS_DIRS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
EVENT = Path("events/kvm/kvm_exit")
# KVM_ISA_VMX 1, KVM_ISA_SVM 2 (arch/x86/kvm/trace.h); SVM_EXIT_SHUTDOWN 0x7f, EXIT_REASON_TRIPLE_FAULT 2.
SHUTDOWN_FILTER = "(isa == 2 && exit_reason == 0x7f) || (isa == 1 && exit_reason == 2)"
# "... kvm_exit: vcpu 1 reason shutdown rip 0xffffffff81001234 info1 ..."
_EXIT = re.compile(r"kvm_exit: vcpu (\d+) reason (\S+) rip (0x[0-9a-f]+)")


@dataclass(frozen=True)
class ShutdownExit:
    vcpu: int
    reason: str
    rip: int

    def describe(self, symbols: SymbolMap | None = None) -> str:
        where = f" ({symbols.name(self.rip)})" if symbols else ""
        return f"vCPU {self.vcpu} {self.reason} at {self.rip:#x}{where}"


def tracefs(runner: Runner) -> Path | None:
    """Where tracefs is, mounting it if need be; None if this kernel has no KVM trace events."""
    for base in TRACEFS_DIRS:
        if (base / EVENT).is_dir():
            return base
    runner.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS_DIRS[0])], "mount tracefs", check=False)
    return TRACEFS_DIRS[0] if (TRACEFS_DIRS[0] / EVENT).is_dir() else None


def arm(base: Path) -> None:
    """Record shutdown exits only, from an empty buffer."""
    (base / EVENT / "filter").write_text(SHUTDOWN_FILTER + "\n")
    (base / EVENT / "enable").write_text("1\n")
    (base / "trace").write_text("")


def collect(base: Path) -> list[ShutdownExit]:
    """The shutdown exits recorded since `arm`; the buffer is emptied."""
    exits = parse((base / "trace").read_text())
    (base / "trace").write_text("")
    return exits


def parse(trace: str) -> list[ShutdownExit]:
    return [ShutdownExit(int(m[1]), m[2], int(m[3], 16)) for m in _EXIT.finditer(trace)]


def verdict(exits: list[ShutdownExit], symbols: SymbolMap | None = None) -> str:
    """What KVM saw, for a guest that ended early."""
    if not exits:
        return "KVM saw no shutdown exit (not a triple fault: a reset the guest asked for, or QEMU's own end)"
    return "KVM saw a shutdown exit (triple fault): " + "; ".join(e.describe(symbols) for e in exits)
