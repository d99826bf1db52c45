"""A level-2 guest's page walk, read from its memory after it triple-faulted.

The shutdown probe (lab.invm.shutdown_trace) gives the guest's CR3 and the
addresses it could not reach (CR2, the IDT's gates, the stack). Whether the
guest's own page tables map them tells a guest that broke its tables from
a CPU (here QEMU's emulated SVM) that failed to read tables that were
whole. x86-64 with 4-level paging only, as the lab's guests run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass

PRESENT = 1 << 0
LARGE = 1 << 7  # PS: a 1 GiB (PUD) or 2 MiB (PMD) page
ADDRESS = 0x000F_FFFF_FFFF_F000  # bits 12-51: the next table or the page
LEVELS = (("pgd", 39), ("pud", 30), ("pmd", 21), ("pte", 12))

# The probe's line: "rip=0x52bc4f rsp=0x7ffe... cr2=0x... cr3=0x97d000 cpl=3 idt=0x... tr=0x... exitintinfo=0x800000ec ..."
_FIELD = re.compile(r"\b(\w+)=(0x[0-9a-fA-F]+|\d+)\b")
# QEMU's `xp /1gx 0x97dff8`: "000000000097dff8: 0x0000000001e3c067"
_XP = re.compile(r"^\s*([0-9a-fA-F]+):\s+0x([0-9a-fA-F]+)\s*$", re.MULTILINE)
EXITINTINFO_VALID = 1 << 31
GATE_SIZE = 16  # a 64-bit IDT gate
DOUBLE_FAULT = 8


@dataclass(frozen=True)
class Step:
    level: str
    entry: int  # the entry's guest-physical address
    value: int | None  # None: the memory could not be read


@dataclass(frozen=True)
class Walk:
    what: str  # why this address ("cr2", "the IDT's gate 236", ...)
    va: int
    steps: tuple[Step, ...]
    gpa: int | None  # where it maps; None if it does not
    reserved: bool = False  # its last entry has address bits the CPU does not have

    def outcome(self) -> str:
        if self.gpa is not None:
            return f"mapped at {self.gpa:#x}"
        if self.reserved:
            # KVM's nested entries for addresses with no memory (MMIO) are made so.
            return f"RESERVED bits at the {self.steps[-1].level}"
        if self.steps and self.steps[-1].value is not None:
            return f"NOT PRESENT at the {self.steps[-1].level}"
        return "not read"

    def brief(self) -> str:
        return f"{self.what} {self.va:#x} {self.outcome()}"

    def describe(self) -> str:
        """The brief line with every entry on the way."""
        chain = " ".join(f"{s.level} {s.value:#x}" if s.value is not None else f"{s.level} unreadable at {s.entry:#x}" for s in self.steps)
        return f"{self.brief()}: {chain}"


def walk(read_u64: Callable[[int], int], cr3: int, va: int, what: str = "", phys_bits: int = 52) -> Walk:
    """The 4-level walk of `va` from `cr3`; `read_u64` reads 8 bytes of guest
    memory at a guest-physical address (OSError if it cannot). An entry with
    address bits at or above `phys_bits` (the CPU's physical width) maps nothing."""
    reserved = ADDRESS & ~((1 << phys_bits) - 1)
    table = cr3 & ADDRESS
    steps: list[Step] = []
    for level, shift in LEVELS:
        entry = table + 8 * ((va >> shift) & 0x1FF)
        try:
            value = read_u64(entry)
        except OSError:
            steps.append(Step(level, entry, None))
            return Walk(what, va, tuple(steps), None)
        steps.append(Step(level, entry, value))
        if not value & PRESENT:
            return Walk(what, va, tuple(steps), None)
        if value & reserved:
            return Walk(what, va, tuple(steps), None, reserved=True)
        if level in ("pud", "pmd") and value & LARGE:
            size = 1 << shift
            return Walk(what, va, tuple(steps), (value & ADDRESS & ~(size - 1)) | (va & (size - 1)))
        table = value & ADDRESS
    return Walk(what, va, tuple(steps), table | (va & 0xFFF))


def probe_fields(state: str) -> dict[str, int]:
    """The shutdown probe's fields as numbers."""
    return {name: int(value, 0) for name, value in _FIELD.findall(state)}


def addresses(state: str) -> list[tuple[str, int]]:
    """What to walk for a triple fault: the faulting address (CR2), the
    code and stack, the IDT's gate of the event being delivered and its #DF
    gate, the TSS (which holds the stacks the gates switch to)."""
    f = probe_fields(state)
    wanted: list[tuple[str, int]] = [(name, f[name]) for name in ("cr2", "rip", "rsp", "tr") if name in f]
    if "idt" in f:
        info = f.get("exitintinfo", 0)
        if info & EXITINTINFO_VALID:
            vector = info & 0xFF
            wanted.append((f"the IDT's gate {vector}", f["idt"] + GATE_SIZE * vector))
        wanted.append(("the IDT's #DF gate", f["idt"] + GATE_SIZE * DOUBLE_FAULT))
    return wanted


def walks(read_u64: Callable[[int], int], state: str) -> list[Walk]:
    """Every address of `addresses(state)` walked from the probe's CR3 ([] without one)."""
    cr3 = probe_fields(state).get("cr3")
    if cr3 is None:
        return []
    return [walk(read_u64, cr3, va, what) for what, va in addresses(state)]


def parse_xp(output: str, address: int) -> int:
    """The quadword QEMU's `xp /1gx ADDRESS` printed; OSError if it printed something else."""
    m = _XP.search(output)
    if not m or int(m[1], 16) != address:
        raise OSError(f"xp {address:#x}: {output.strip()[:120]!r}")
    return int(m[2], 16)


@dataclass(frozen=True)
class NestedRead:
    """One guest-physical word the CPU read on a walk, through level 1's nested tables."""

    gpa: int
    guest_value: int | None  # what QEMU's memory of the guest holds there (xp)
    nested: Walk  # level 1's nested walk of gpa: the page the CPU reads it from
    host_value: int | None  # what that page holds there (None: not mapped or not read)

    def agrees(self) -> bool:
        return self.nested.gpa is not None and self.host_value is not None and self.host_value == self.guest_value

    def describe(self) -> str:
        if self.nested.gpa is None:
            return f"{self.gpa:#x}: the nested tables {self.nested.outcome()}"
        if self.host_value is None:
            return f"{self.gpa:#x}: nested {self.nested.outcome()}, not read"
        same = "the same" if self.agrees() else f"NOT the guest's {_hex(self.guest_value)}"
        return f"{self.gpa:#x}: nested {self.nested.outcome()} holds {self.host_value:#x}, {same}"


def _hex(value: int | None) -> str:
    return "unread" if value is None else f"{value:#x}"


def nested_reads(
    read_guest: Callable[[int], int], read_host: Callable[[int], int], ncr3: int, found: list[Walk], phys_bits: int = 52
) -> list[NestedRead]:
    """Every entry of `found`'s walks and each word they reach, read again
    through level 1's nested page tables (root `ncr3`, the VMCB's N_CR3):
    where the page they map holds what QEMU's memory of the guest holds,
    the emulated CPU had whole tables to read; where it does not, level 1's
    nested tables (its KVM, or whatever wrote over them) misled it."""
    # The table entries' values were read on the walk; only the words they reach are read here.
    guest: dict[int, int | None] = {s.entry: s.value for w in found for s in w.steps}
    for target in (w.gpa for w in found if w.gpa is not None):
        if target not in guest:
            try:
                guest[target] = read_guest(target)
            except OSError:
                guest[target] = None
    pages: dict[int, Walk] = {}  # each guest page walked once (reads of level 1's memory are slow)
    reads = []
    for gpa, guest_value in guest.items():
        page = gpa & ~0xFFF
        if page not in pages:
            pages[page] = walk(read_host, ncr3, page, f"{page:#x}", phys_bits)
        base = pages[page].gpa
        at = None if base is None else base + (gpa & 0xFFF)
        host_value = None
        if at is not None:
            with contextlib.suppress(OSError):
                host_value = read_host(at)
        reads.append(NestedRead(gpa, guest_value, dataclasses.replace(pages[page], what=f"{gpa:#x}", va=gpa, gpa=at), host_value))
    return reads


def physical_bits(cpuinfo: str) -> int:
    """The CPU's physical address width from /proc/cpuinfo ("address sizes : 40 bits physical"); 52 if not said."""
    m = re.search(r"address sizes\s*:\s*(\d+) bits physical", cpuinfo)
    return int(m[1]) if m else 52


def nested_summary(reads: list[NestedRead]) -> str:
    """'level 1's nested tables: ...', for the walk's line."""
    if not reads:
        return "level 1's nested tables: nothing to read"
    differ = [r for r in reads if not r.agrees()]
    if not differ:
        return f"level 1's nested tables: all {len(reads)} words the same through them"
    return f"level 1's nested tables: {len(differ)} of {len(reads)} words differ: " + ", ".join(r.describe() for r in differ[:4])
