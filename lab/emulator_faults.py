"""Evidence that an attempt was lost to the emulated CPU, not to a kernel.

Level 1 runs under QEMU TCG here, and TCG's nested SVM sometimes mishandles
interrupts around VMRUN/#VMEXIT (seen with QEMU 7.2 and 10.0; README,
"Known emulator faults"). Each sign below is one no correct CPU produces,
and each is matched as narrowly as the text allows:

- `null-percpu`: an oops whose faulting instruction dereferences the value
  just read from `current_task`'s per-CPU slot (the `mov %gs:disp(%rip)`
  in the Code bytes must resolve, with the RIP and System.map, to
  `pcpu_hot`), and that value is 0. `current` is never NULL while the
  kernel runs with its own GS base; it reads 0 when the CPU runs kernel
  code with the level-2 guest's GS base (an interrupt taken between KVM's
  VMLOAD of the guest's state and of the host's, while GIF is clear). Any
  other NULL per-CPU pointer is an ordinary kernel bug.
- `null-cs-frame`: an oops whose saved frame has code segment 0 (`RIP:
  0000:...`). A 64-bit kernel cannot run with a null CS.
- `guest-null-current`: a level-2 oops left by a page-fault handler that
  read a NULL `current`: RAX (where exc_page_fault loads `current`) is 0,
  R12 (where it keeps CR2) is the small offset it then read from it
  (`current->mm`), and the report is the stack overflowing in the
  page-fault entry ("stack guard page was hit", RIP in
  `(asm_)exc_page_fault`) or the fault at that very address ("Corrupted
  page table at address R12"). The same registers as `null-percpu` in
  level 1, seen in a level-2 guest of the unpatched kernel (base-ipi).
- `nmi-never-left`: "scheduling while atomic" with the NMI bits of the
  preempt count set: an NMI was entered and its exit never ran. Placed at
  the same task's `__local_bh_enable_ip` warning (`in_hardirq()`, the
  hardirq count nmi_enter() raises with the NMI count) when that report
  comes right before it, the same count seen first.
- `wild-return-from-halt`: an oops in an idle task (`swapper/N`) fetching
  an instruction at a raw address that is no code (`RIP: 0010:0x...`, no
  symbol), whose trace starts at the idle loop's HLT
  (`pv_native_safe_halt`): the CPU came back from HLT, through an
  interrupt, somewhere no kernel code jumps. Seen on the unpatched kernel
  (the emulator control's base-ipi cell, at 0xffff8c8b919a899a; on ours
  also at 0x1e0).
- `stuck-in-guest`: level 1 reported an RCU stall on a CPU that its CPU
  dump shows running at CPL 3 with interrupts enabled while its local APIC
  holds a requested interrupt above its priority, none in service (KVM
  intercepts every interrupt of a running guest, and level 1's own user
  code takes it: a correct CPU leaves at the next instruction). A CPU at
  CPL 3 with nothing pending is a stall of some other cause. The stall
  may also be reported by the CPU that waits for it: a soft lockup in
  `smp_call_function_many_cond()`, when the CPU at CPL 3 holds a
  call-function IPI requested and not taken (the emulator control's
  base-spin cell, unpatched kernel, 2026-12-05).
- `lost-wakeup`: two CPU dumps, each taken with the VM stopped and at
  least a second of running apart, show the same CPU halted with
  interrupts enabled and the same interrupt above its priority requested
  and none in service (lab.monitor): a correct CPU takes that interrupt.
  Seen on the unpatched kernel (the emulator control's base-flip cell,
  2026-12-04: CPU 0 idle in HLT with a call-function IPI pending while
  CPU 1 waited for it in smp_call_function_many_cond()).
- `guest-at-vmrun-return`: level 1's exit sample of a level-2 guest that
  stopped making progress (lab.invm.exit_sample, kept by lab.exit_record)
  shows a vCPU taking nested page faults, nearly all its exits, at the
  instruction right after VMRUN in KVM's `__svm_vcpu_run` (lab.landmarks):
  level 1's own return point from its guest. Level 2 runs the same kernel image (no KASLR) and never
  a VM of its own, so it never runs that code: the emulator put level 1's
  RIP into level 2's state. The RIP under `null-percpu`'s oopses too.
- `irq-at-vmrun-return`: a level-1 oops trace in which a maskable
  interrupt's entry (`asm_sysvec_*`, `asm_common_interrupt`) interrupted
  level 1 at that same instruction right after VMRUN (the frame's RIP,
  with System.map, is the landmark): #VMEXIT clears GIF, which holds every
  interrupt until KVM's STGI, so a correct CPU takes none there. The
  handler then runs with the guest's GS base: `null-percpu` when its
  per-CPU read finds 0, or, as in stress run 20261205T073507Z-6615, page
  faults on the per-CPU reads themselves until the stack overflows (RAX
  not 0, so not `null-percpu`). Seen on the unpatched kernel (base-spin,
  2026-12-05: `asm_sysvec_reschedule_ipi` over `__svm_vcpu_run+0xa0`).
- `guest-resumed-past-exit`: level 1 saw a level-2 vCPU triple-fault (KVM's
  shutdown trace, lab.invm.shutdown_trace) at the instruction right after
  one that exits to level 1 (`out`, `in`, `wrmsr`, `pause`, ...: the guest
  kernel's text, lab.exit_returns), with no oops or panic on the guest's
  console: the guest died on an instruction it had not run yet, where
  level 1 had just resumed it, as if its state came back from VMRUN broken.
  Seen on the unpatched kernel (the emulator control's base-girq cell:
  `io_serial_out`'s `ret` after `out`, `queued_spin_lock_slowpath`'s `jmp`
  after `pause`).
- `clock-from-guest`: a level-1 splat stamped seconds before the kernel's
  lines above it, as if level 1 had read its clock with level 2's TSC
  offset still applied: the oops of stress run 20261204T163519Z-6f63
  (`null-percpu`'s registers) was stamped 17.1 s, the age of the guest its
  vCPU thread ran, among lines at 542-656 s; 2708's double fault 6.48 s
  among 58 s. A kernel's own clock does not step back by seconds.
- `irq-with-if-clear`: an oops trace in which an interrupt handler's entry
  (`asm_sysvec_*`, `asm_common_interrupt`) was itself interrupted at its
  very first instruction, with IF clear in the saved flags, by a maskable
  interrupt (the frame above it is another interrupt's entry, no NMI in
  sight): the gate had just cleared IF, and a correct CPU delivers no
  maskable interrupt with IF clear. The nested entry, coming from kernel
  mode, skips SWAPGS and runs with the user's GS base: its per-CPU reads
  fault until the stack overflows (stress run 20261205T053244Z-796b, a
  guest's APIC timer entered twice from user mode). Also from a CPU dump
  of a wedged level 1 (lab.monitor): a kernel-mode frame with IF clear
  right above a maskable interrupt entry's call into its handler (run
  20261206T170205Z-de20: the APIC timer inside `__schedule()`'s switch,
  whose handler then waited for the runqueue lock the switch held, while
  the other CPU waited for the pi_lock the handler had taken). Not yet
  seen on the unpatched kernel, so it excuses nothing.
- `idt-unreadable`: a level-2 vCPU triple-faulted, and its state at the
  shutdown (lab.invm.shutdown_trace's probe of the VMCB) has CR2, the
  last page fault's address, inside the guest's own IDT: the CPU could not
  read the IDT to deliver an event (EXITINTINFO names it), nor to deliver
  the faults that followed. The IDT is mapped in every page table of a
  running kernel, so a correct CPU faults there only if the guest unmapped
  it; a nested walk that missed belongs in a nested page fault exit to
  level 1 (stress run 20261205T062501Z-22f7: interrupt 236 from user mode,
  CR2 = IDT + 0x80, the double fault's entry). Seen on the unpatched
  kernel since 2026-12-06 (control run 20261206T045513Z-a3bf, base-girq:
  the guest's vCPU 0 right after an `out` in `io_serial_out`, a page
  fault being delivered, the guest's tables and level 1's nested tables
  whole), so it may excuse; read through level 1's nested tables with a
  difference it is `nested-tables-differ` instead. Since 2026-12-05 the paused
  guest's own page tables are walked for CR2 (lab.invm.reset_watch): the
  detail says whether they mapped it (stress run 20261205T090053Z-5be4,
  the first walked: they did, so the CPU failed to read whole tables).
  Since 2026-12-06 the same words are read again through level 1's nested
  tables (the VMCB's N_CR3): whether the pages the CPU was given hold
  what QEMU's memory of the guest holds. A difference puts the fault on
  level 1 (its nested tables, or whatever wrote over them), not on the
  emulated CPU.
- `unkillable-vcpu`: level 1's watchdog found a killed VMM still *running*
  (state R) long after SIGKILL: a CPU that never leaves its guest. A
  thread asleep (state D, e.g. in our teardown) is a kernel bug, not this.
  Seen on the unpatched kernel (base-spin, 2026-12-05: the vCPU thread of
  a guest whose level-1 CPU was `stuck-in-guest`).
- `guest-with-host-gs`: a level-2 oops whose page-fault entry overflowed
  its stack faulting on the read of `current` itself, at level 1's own GS
  base: R12 (the first fault's address) is `pcpu_hot`'s offset from a GS
  base level 1 printed in a report of its own, not the guest's. The
  reverse of `null-percpu`: level 2 ran with level 1's GS base
  (mutants-20261206T003549Z's unmodified tree: the kexec guest at 2.2 s,
  level 1's CPU 1 base, as the vCPU thread running it on that CPU left an
  NMI behind, `nmi-never-left`). Not yet seen on the unpatched kernel,
  so it excuses nothing.
- `guest-in-host-state`: a level-2 vCPU stopped at a triple fault with a
  CR3 beyond the guest's RAM: the state the CPU ran it with was not the
  guest's. The first (stress run 20261206T033635Z-35e4, debug profile,
  hostile part's policy round 0): CR3 0x108f69000 and RSP
  0xffff8881045c8000, level 1's own (its page tables, its direct map, far
  past the guest's 256 MiB), TR base 0, at `error_entry`; level 1 then
  reported a KASAN use-after-free in `putname` and oopsed in KASAN's
  quarantine with that RSP in R15: level 1's context ran as the guest,
  and level 1 lost it. The shape of `guest-at-vmrun-return` (a guest
  looping at level 1's VMRUN return with level 1's CR3, as in control
  run 20261206T041122Z-e1e3), further on; but not yet seen itself on the
  unpatched kernel, so it excuses nothing.
- `vcpu-fault-recursion`: a level-1 double fault in a vCPU thread
  (`CPU n/KVM`) at the page-fault entry (`exc_page_fault`, `error_entry`,
  `asm_exc_page_fault`) with CR2 just below RSP: the page-fault handler
  faulted again and again until it ran off its stack. The debug profile's
  form of `null-percpu` and `guest-with-host-gs` (its task stacks have no
  guard page, so the recursion ends in a #DF, not in a stack-guard oops
  whose Code line shows the per-CPU read): debug run
  20261206T172501Z-ab7e (`error_entry+0xd`, ten `exc_page_fault+0x1c`
  frames in the dump, and the overflow wrote over the other CPU's hrtimer
  tree) and stress run 20261206T094754Z-1a14 (`exc_page_fault+0x4`).
  The shape does not say whose bad GS base or pointer started it, and the
  control has run only the default profile, so it excuses nothing.
- `nested-tables-differ`: an `idt-unreadable` whose words, read again
  through level 1's nested tables, are not all what QEMU's memory of the
  guest holds: level 1 gave the CPU other pages (its KVM, or a write over
  its tables), so the fault is level 1's to explain, whatever the
  emulator did. Never excuses anything.

Whether a sign may excuse anything (where it is, whose code is in its
trace) is decided in lab.attempts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab import exit_record, landmarks
from lab.errors import LabError
from lab.exit_record import VcpuExits
from lab.monitor import IRQ_WITH_IF_CLEAR_LINE, LOST_WAKEUP_LINE, lapic_vectors, running_with_interrupt_pending, split_dump
from lab.protocol import WEDGED
from lab.splats import PATTERNS

# "Code: ... 65 48 8b 05 d0 d1 d2 d3 <48> 8b ...": mov %gs:disp32(%rip),%rax
# immediately followed by the faulting load through %rax.
_GS_LOAD_THEN_FAULT = re.compile(r"Code: .*\b65 48 8b 05 ((?:[0-9a-f]{2} ){4})<48> 8b ")
_RAX_ZERO = re.compile(r"\bRAX: 0{16}\b")
_RIP_SYMBOL = re.compile(r"\bRIP: 0010:([A-Za-z0-9_.]+)\+0x([0-9a-f]+)/0x[0-9a-f]+")
# "BUG: scheduling while atomic: comm/pid/0x00110000": the preempt count.
_SCHED_ATOMIC = re.compile(r"BUG: scheduling while atomic: .*/(\d+)/(0x[0-9a-f]+)\s*$", re.MULTILINE)
# kernel/softirq.c's WARN_ON_ONCE(in_hardirq()): a task with the hardirq
# count raised, which nmi_enter() raises with the NMI count.
_BH_ENABLE_IN_HARDIRQ = re.compile(r"WARNING: CPU: \d+ PID: (\d+) at \S+ __local_bh_enable_ip\+0x")
_CUT_HERE = re.compile(r"-+\[ cut here \]-+")
_NMI_MASK = 0x00F00000  # include/linux/preempt.h: NMI_BITS 4 at NMI_SHIFT 20
# "rcu: \t0-...0: (4696 ticks this GP) ...": a stalled CPU.
_RCU_STALLED_CPU = re.compile(r"rcu:\s+(\d+)-\S*: \(")
# A soft lockup report, and its RIP line a few lines below, in the IPI's wait loop.
_SOFT_LOCKUP = re.compile(r"watchdog: BUG: soft lockup - CPU#\d+ stuck for")
_IPI_WAIT_RIP = re.compile(r"\bRIP: 0010:smp_call_function_many_cond\+0x")
SOFT_LOCKUP_RIP_WITHIN = 6
# arch/x86/include/asm/irq_vectors.h: CALL_FUNCTION_SINGLE_VECTOR, CALL_FUNCTION_VECTOR.
CALL_FUNCTION_VECTORS = (0xFB, 0xFC)
# A CPU's header and its RIP line in the monitor dump (lab.monitor).
# A level-2 report of a page-fault handler that read a NULL current (guest-null-current).
_GUEST_GUARD_HIT = re.compile(r"BUG: \S+ stack guard page was hit")
_GUEST_BAD_TABLE = re.compile(r"Corrupted page table at address ([0-9a-f]+)\s*$")
_GUEST_PF_RIP = re.compile(r"\bRIP: 0010:(?:asm_)?exc_page_fault\+0x")
_R12 = re.compile(r"\bR12: ([0-9a-f]{16})\b")
PAGE_SIZE = 0x1000
# clock-from-guest: a splat stamped this much before the kernel's latest line.
CLOCK_BACK_S = 5.0
_PRINTK_STAMP = re.compile(r"^\s*\[\s*(\d+\.\d+)\]")
_SPLAT_LINE = re.compile("|".join(rx for _, rx in PATTERNS))
# The oops header's "RIP: CS:address" with CS 0.
_NULL_CS_RIP = re.compile(r"\bRIP: 0000:\S+")
# "RIP: 0010:0xffff8c8b919a899a", "RIP: 0010:0x1e0": an address with no symbol.
_RAW_RIP = re.compile(r"\bRIP: 0010:(0x[0-9a-f]+)\s*$")
# The idle loop's HLT, where an interrupt returns to the idle task.
_HALT_FRAME = re.compile(r"^\s*(?:\[[\s\d.]+\]\s*)?\??\s*(pv_native_safe_halt|native_safe_halt|default_idle)\+0x")
# The per-CPU structure whose first member is current_task (x86, 6.12).
CURRENT_TASK_SYMBOL = "pcpu_hot"

# Every sign find() can report, in the order of the docstring.
SIGNATURES = ("null-percpu", "null-cs-frame", "guest-null-current", "nmi-never-left", "wild-return-from-halt",
              "stuck-in-guest", "lost-wakeup", "guest-at-vmrun-return", "irq-at-vmrun-return", "guest-resumed-past-exit",
              "clock-from-guest", "irq-with-if-clear", "idt-unreadable", "unkillable-vcpu", "guest-with-host-gs",
              "guest-in-host-state", "vcpu-fault-recursion", "nested-tables-differ")  # fmt: skip

# The signs `nox -s emulator_control` saw on the unpatched kernel (README,
# "Emulator control"; tests/unit/test_emulator_control.py holds this to the
# table): only these may excuse an attempt. A sign seen only with our code
# attached is ours until a control shows otherwise.
ATTRIBUTABLE: frozenset[str] = frozenset(
    {
        "clock-from-guest",
        "guest-at-vmrun-return",
        "guest-null-current",
        "guest-resumed-past-exit",
        "idt-unreadable",
        "irq-at-vmrun-return",
        "lost-wakeup",
        "nmi-never-left",
        "null-percpu",
        "stuck-in-guest",
        "unkillable-vcpu",
        "wild-return-from-halt",
    }
)

# A vCPU loops on one exit: enough exits in the sample, nearly all of them at one place.
LOOP_MIN_EXITS = 50
LOOP_SHARE = 0.9

# Where the sign was found; line 0: at the end of the attempt (a CPU dump
# or a watchdog report, which describe the machine as it was stopped).
AT_END = 0


@dataclass(frozen=True)
class Evidence:
    signature: str
    detail: str
    source: str  # file name in the attempt's directory
    line_no: int  # 1-based line of the sign in `source`, or AT_END

    def describe(self) -> str:
        where = f"{self.source}:{self.line_no}" if self.line_no else self.source
        return f"{self.signature}: {self.detail} ({where})"


def read_symbols(system_map: Path | None) -> dict[str, int]:
    """name -> address from a System.map (all symbol types)."""
    if system_map is None or not system_map.exists():
        return {}
    symbols: dict[str, int] = {}
    for line in system_map.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            symbols.setdefault(parts[2], int(parts[0], 16))
    return symbols


def _displacement(code_bytes: str) -> int:
    return int.from_bytes(bytes.fromhex(code_bytes), "little", signed=True)


def _reads_current_task(lines: list[str], i: int, symbols: dict[str, int]) -> bool:
    """The Code line lines[i] loads from pcpu_hot (current_task), by the
    RIP of its oops (a few lines before) and the displacement."""
    m = _GS_LOAD_THEN_FAULT.search(lines[i])
    target = symbols.get(CURRENT_TASK_SYMBOL)
    if not m or target is None:
        return False
    rip = next((r for line in reversed(lines[max(0, i - 4) : i]) if (r := _RIP_SYMBOL.search(line))), None)
    if rip is None or rip[1] not in symbols:
        return False
    # RIP-relative: the displacement counts from the next instruction, the faulting one.
    next_insn = symbols[rip[1]] + int(rip[2], 16)
    return (next_insn + _displacement(m[1])) & (2**64 - 1) == target


def _is_null_percpu_code(lines: list[str], i: int, symbols: dict[str, int]) -> bool:
    return _reads_current_task(lines, i, symbols) and any(_RAX_ZERO.search(after) for after in lines[i + 1 : i + 4])


def null_percpu_oops(console: str, symbols: dict[str, int]) -> tuple[int, str]:
    """(1-based line, Code line) of an oops that read a NULL current_task, or (0, '')."""
    lines = console.splitlines()
    return next(((i + 1, lines[i].strip()) for i in range(len(lines)) if _is_null_percpu_code(lines, i, symbols)), (0, ""))


# A maskable interrupt's entry frame in a trace ("asm_sysvec_reschedule_ipi+0x1a/0x20").
_IRQ_ENTRY_LINE = re.compile(r"^\s*(?:\[[\s\d.]+\]\s*)?\??\s*(asm_(?:sysvec_\w+|common_interrupt))\+0x[0-9a-f]+/0x[0-9a-f]+\s*$")
IRQ_FRAME_WITHIN = 2  # lines between an entry's frame and the RIP line of what it interrupted


def irq_at_vmrun_return(console: str, symbols: dict[str, int], vmrun_return: int) -> tuple[int, str]:
    """(line of the RIP, the entry) of a level-1 trace where an interrupt's
    entry interrupted the instruction right after VMRUN, or (0, '')."""
    lines = console.splitlines()
    for i, line in enumerate(lines):
        rip = _RIP_SYMBOL.search(line)
        if not rip or rip[1] not in symbols or symbols[rip[1]] + int(rip[2], 16) != vmrun_return:
            continue
        for before in reversed(lines[max(0, i - IRQ_FRAME_WITHIN) : i]):
            if m := _IRQ_ENTRY_LINE.match(before):
                return i + 1, f"{m[1]} over {rip[1]}+0x{rip[2]}"
    return 0, ""


def null_cs_frame(console: str) -> tuple[int, str]:
    """(line, RIP line) of an oops whose frame says CS was 0, or (0, '')."""
    for i, line in enumerate(console.splitlines()):
        if m := _NULL_CS_RIP.search(line):
            return i + 1, m[0]
    return 0, ""


_DOUBLE_FAULT = re.compile(r"Oops: double fault\b")
_VCPU_COMM = re.compile(r"\bComm: (CPU \d+/KVM)\b")
_FAULT_ENTRY_RIP = re.compile(r"\bRIP: 0010:((?:exc_page_fault|error_entry|asm_exc_page_fault)\+0x[0-9a-f]+)/")
_RSP = re.compile(r"\bRSP: 0018:([0-9a-f]{16})\b")
_CR2 = re.compile(r"\bCR2: ([0-9a-f]{16})\b")
DOUBLE_FAULT_REPORT_LINES = 40  # the faulting CPU's lines follow its Oops line within this (another CPU's may interleave)
STACK_OVERRUN = 16  # CR2 this far below RSP at most: the push that ran off the stack


def vcpu_fault_recursion(console: str) -> tuple[int, str]:
    """(line of the double fault's Oops line, what) of a vCPU thread whose
    page-fault entry ran off its stack, or (0, '')."""
    lines = console.splitlines()
    for i, line in enumerate(lines):
        if not _DOUBLE_FAULT.search(line):
            continue
        window = lines[i : i + DOUBLE_FAULT_REPORT_LINES]
        comm = next(((j, m[1]) for j, ln in enumerate(window) if (m := _VCPU_COMM.search(ln))), None)
        if comm is None:
            continue
        after = window[comm[0] :]
        rip = next((m[1] for ln in after if (m := _FAULT_ENTRY_RIP.search(ln))), None)
        rsp = next((int(m[1], 16) for ln in after if (m := _RSP.search(ln))), None)
        cr2 = next((int(m[1], 16) for ln in after if (m := _CR2.search(ln))), None)
        if rip and rsp is not None and cr2 is not None and 0 < rsp - cr2 <= STACK_OVERRUN:
            return i + 1, f"{comm[1]} at {rip}, CR2 {cr2:#x} = RSP - {rsp - cr2}"
    return 0, ""


def wild_return_from_halt(console: str) -> tuple[int, str]:
    """(line, RIP) of an idle task's oops fetching code at a raw address, its
    trace starting at the idle HLT, or (0, '')."""
    lines = console.splitlines()
    for i, line in enumerate(lines):
        m = _RAW_RIP.search(line)
        if not m:
            continue
        header = lines[max(0, i - 10) : i]
        if not any("#PF: supervisor instruction fetch" in h for h in header) or not any("Comm: swapper/" in h for h in header):
            continue
        trace = next((j for j in range(i + 1, min(len(lines), i + 30)) if "Call Trace:" in lines[j]), None)
        if trace is None:
            continue
        first = next((f for f in lines[trace + 1 : trace + 6] if not re.search(r"<(TASK|IRQ)>\s*$", f)), "")
        if _HALT_FRAME.search(first):
            return i + 1, m[1]
    return 0, ""


def _r12_of(report: list[str]) -> int | None:
    """R12 in an oops report's registers (exc_page_fault keeps CR2 there)."""
    return next((int(m[1], 16) for ln in report if (m := _R12.search(ln))), None)


def guest_null_current(console: str) -> tuple[int, str]:
    """(line, header) of a level-2 oops from a page-fault handler that read
    a NULL `current` (RAX 0, R12 a NULL-page offset; the stack overflowed in
    the page-fault entry, or that offset itself faulted), or (0, '')."""
    lines = console.splitlines()
    for i, line in enumerate(lines):
        guard, table = _GUEST_GUARD_HIT.search(line), _GUEST_BAD_TABLE.search(line)
        if not guard and not table:
            continue
        report = lines[i : i + 16]
        r12 = _r12_of(report)
        if r12 is None or not 0 < r12 < PAGE_SIZE or not any(_RAX_ZERO.search(ln) for ln in report):
            continue
        if guard and any(_GUEST_PF_RIP.search(ln) for ln in report[:6]):
            return i + 1, guard[0]
        if table and int(table[1], 16) == r12:
            return i + 1, table[0]
    return 0, ""


# A GS base as an oops report prints it: "GS:ffff88813cd00000(0000)".
_GS_BASE = re.compile(r"\bGS:([0-9a-f]{16})\(")


def gs_bases(text: str) -> set[int]:
    """The GS bases the reports in `text` were taken with (0 left out)."""
    return {int(m[1], 16) for m in _GS_BASE.finditer(text)} - {0}


def guest_with_host_gs(console: str, level1_gs: set[int], symbols: dict[str, int]) -> tuple[int, str]:
    """(line, what) of a level-2 oops whose page-fault entry overflowed its
    stack faulting on `current` read through one of level 1's own GS bases
    (R12, where exc_page_fault keeps CR2, is such a base plus `pcpu_hot`'s
    per-CPU offset: both levels run one image), or (0, '')."""
    hot = symbols.get(CURRENT_TASK_SYMBOL)
    if hot is None or not level1_gs:
        return 0, ""
    lines = console.splitlines()
    for i, line in enumerate(lines):
        guard = _GUEST_GUARD_HIT.search(line)
        if not guard:
            continue
        report = lines[i : i + 16]
        r12 = _r12_of(report)
        if r12 is None or not any(_GUEST_PF_RIP.search(ln) for ln in report[:6]):
            continue
        base = r12 - hot
        if base in level1_gs and base not in gs_bases("\n".join(report)):
            return i + 1, f"{guard[0]}: R12 {r12:x} is level 1's GS base {base:x} + {CURRENT_TASK_SYMBOL}"
    return 0, ""


# An interrupt entry's first instruction as an oops frame, and any interrupt entry's return address.
_IRQ_ENTRY_AT_START = re.compile(r"\bRIP: 0010:(asm_(?:sysvec_\w+|common_interrupt))\+0x0/0x[0-9a-f]+")
_IRQ_ENTRY_FRAME = re.compile(r"\basm_(?:sysvec_\w+|common_interrupt)\+0x[0-9a-f]+/")
_EFLAGS = re.compile(r"\bEFLAGS: ([0-9a-f]+)")
_IF_FLAG = 0x200
NESTED_FRAME_WITHIN = 4  # lines between the nested entry's frame and the RIP line it interrupted
_NMI_CONTEXT = re.compile(r"NMI backtrace|\bexc_nmi\b|\basm_exc_nmi\b|\bnmi_handle\b")


def irq_with_if_clear(console: str) -> tuple[int, str]:
    """(line of the oops's first line, the frame) of an interrupt entry
    interrupted at its first instruction, IF clear, by a maskable interrupt; or (0, '')."""
    lines = console.splitlines()
    for i, line in enumerate(lines):
        m = _IRQ_ENTRY_AT_START.search(line)
        if not m:
            continue
        flags = next((int(f[1], 16) for ln in lines[i + 1 : i + 4] if (f := _EFLAGS.search(ln))), None)
        nested = any(_IRQ_ENTRY_FRAME.search(ln) for ln in lines[max(i - NESTED_FRAME_WITHIN, 0) : i])
        start = next((j for j in range(i, -1, -1) if _SPLAT_LINE.search(lines[j])), None)
        if flags is None or flags & _IF_FLAG or not nested or start is None:
            continue
        while start > 0 and _SPLAT_LINE.search(lines[start - 1]):
            start -= 1  # the report's first line ("BUG: ..." before "Oops: ...")
        if any(_NMI_CONTEXT.search(ln) for ln in lines[start:i]):
            continue  # an NMI may land there: not this
        return start + 1, f"{m[1]}+0x0 entered again with IF clear (EFLAGS {flags:08x})"
    return 0, ""


def nmi_never_left(console: str) -> tuple[int, str]:
    """(line, report) of a task that scheduled with the preempt count inside
    an NMI, or (0, ''). The same task's warning of a raised hardirq count
    right before it, with no other report between, is the same count seen
    first (the unmodified tree of mutants-20261206T003549Z:
    `__local_bh_enable_ip` from KVM_RUN's FPU swap, then the schedule at
    the next syscall's end): the sign is placed at that warning."""
    lines = console.splitlines()
    for i, line in enumerate(lines):
        m = _SCHED_ATOMIC.search(line)
        if m and int(m[2], 16) & _NMI_MASK:
            return _same_count_seen_first(lines, i, m[1]), m[0].strip()
    return 0, ""


def _same_count_seen_first(lines: list[str], at: int, pid: str) -> int:
    """1-based line of the report that first shows task `pid`'s raised count:
    its `__local_bh_enable_ip` warning when the only splat lines between
    that and line `at` are the warning's own; else `at`'s own line."""
    for j in range(at - 1, -1, -1):
        warning = _BH_ENABLE_IN_HARDIRQ.search(lines[j])
        if warning:
            if warning[1] != pid:
                break
            start = j - 1 if j > 0 and _CUT_HERE.search(lines[j - 1]) else j
            return start + 1
        if _SPLAT_LINE.search(lines[j]):
            break  # another report between them
    return at + 1


def clock_from_guest(console: str) -> tuple[int, str]:
    """(line, what) of the first splat line stamped CLOCK_BACK_S or more before
    the latest printk time above it, or (0, '')."""
    latest = 0.0
    for i, line in enumerate(console.splitlines()):
        m = _PRINTK_STAMP.match(line)
        if not m:
            continue
        stamp = float(m[1])
        if latest - stamp >= CLOCK_BACK_S and _SPLAT_LINE.search(line):
            return i + 1, f"{line.strip()[:100]}, after lines stamped {latest:.1f} s"
        latest = max(latest, stamp)
    return 0, ""


def stuck_in_guest(console: str, cpu_dump: str) -> list[int]:
    """CPUs level 1 reports stalled that the dump shows at CPL 3 not taking a deliverable interrupt."""
    stalled = {int(m[1]) for m in _RCU_STALLED_CPU.finditer(console)}
    registers, lapics = split_dump(cpu_dump)
    if waits_for_call_function(console):
        # The waiter names no CPU: the one holding a call-function IPI it has not taken is the one it waits for.
        stalled |= {i for i, lapic in enumerate(lapics) if set(lapic_vectors(lapic, "IRR")) & set(CALL_FUNCTION_VECTORS)}
    return sorted(stalled & set(running_with_interrupt_pending(registers, lapics)))


def waits_for_call_function(console: str) -> bool:
    """Whether level 1 reported a soft lockup of a CPU spinning in
    smp_call_function_many_cond(): waiting for other CPUs to run its IPI."""
    lines = console.splitlines()
    for i, line in enumerate(lines):
        if _SOFT_LOCKUP.search(line) and any(_IPI_WAIT_RIP.search(after) for after in lines[i + 1 : i + 1 + SOFT_LOCKUP_RIP_WITHIN]):
            return True
    return False


def unkillable_running(console: str) -> str:
    """The watchdog's report of a killed command still running (state R) past SIGKILL, or ''."""
    for line in console.splitlines():
        if WEDGED in line and "survives SIGKILL" in line and re.search(r"\bstate R\b", line):
            return line.strip()
    return ""


def guest_at_vmrun_return(vcpus: list[VcpuExits], vmrun_return: int) -> str:
    """A vCPU looping on nested page faults at level 1's return point from VMRUN, or ''."""
    for v in vcpus:
        if v.count < LOOP_MIN_EXITS or not v.top:
            continue
        reason, rip, n = v.top[0]
        if reason == "npf" and rip == vmrun_return and n >= LOOP_SHARE * v.count:
            return f"vCPU {v.vcpu}: {n} of {v.count} exits npf at {rip:#x}"
    return ""


def _vmrun_return_loops(attempt_dir: Path, vmrun_return: int) -> list[Evidence]:
    """`guest-at-vmrun-return` in every exit sample level 1 kept of the attempt."""
    found = []
    for record in sorted(attempt_dir.glob(exit_record.record_name("*"))):
        try:
            vcpus, _ = exit_record.read_record(record)
        except (ValueError, KeyError, TypeError) as exc:
            raise LabError(f"{record} is not an exit sample ({exc})", fix="report it with the file") from exc
        if seen := guest_at_vmrun_return(vcpus, vmrun_return):
            what = f"a level-2 {seen}, level 1's return point from VMRUN"
            # At the end: it explains the stalls it causes; in the guest's console: what failed once that guest began.
            found.append(Evidence("guest-at-vmrun-return", what, record.name, AT_END))
            # A guest that printed nothing yet has an empty console: its sign
            # sits at its first line (test run eadc's reboot guest).
            console = attempt_dir / f"level2-console-{exit_record.label_of(record)}.log"
            if console.exists():
                found.append(Evidence("guest-at-vmrun-return", what, console.name, _last_line(_read(console).splitlines())))
    return found


# "... KVM saw a shutdown exit (triple fault): vCPU 0 shutdown at 0xffffffff81ac0179 (io_serial_out+0x73))
#  (console /.../level2-console-kvm.log)": level 1's report of a guest that ended early (lab.invm.level2).
_TRIPLE_FAULT = re.compile(r"KVM saw a shutdown exit \(triple fault\): (.*?)\) \(console \S*?(level2-console-[^/\s]+\.log)\)")
SHUTDOWN_AT = re.compile(r"vCPU (\d+) shutdown at (0x[0-9a-f]+)(?: \(([^)]*)\))?")
# A guest that reported its own death: not a silent triple fault.
_GUEST_DIED_ALOUD = re.compile(r"Kernel panic|Oops:|BUG: |general protection fault|double fault")


def resumed_past_exit(attempt_dir: Path, console: str, exit_before: Callable[[int], str | None]) -> list[Evidence]:
    """`guest-resumed-past-exit` for every guest level 1 saw triple-fault, silently, after an exiting instruction."""
    found = []
    for m in _TRIPLE_FAULT.finditer(console):
        guest = attempt_dir / m[2]
        guest_lines = _read(guest).splitlines()
        if not guest.exists() or any(_GUEST_DIED_ALOUD.search(line) for line in guest_lines):
            continue
        for vcpu, rip, where in SHUTDOWN_AT.findall(m[1]):
            name = exit_before(int(rip, 16))
            if name:
                what = f"level-2 vCPU {vcpu} triple-faulted at {where or rip}, right after `{name}`, where level 1 resumed it"
                found.append(Evidence("guest-resumed-past-exit", what, m[2], _last_line(guest_lines)))
    return found


# "its state rip=0x52bc4f rsp=... cr2=0xfffffe0000000080 ... idt=0xfffffe0000000000 ... exitintinfo=0x800000ec"
_STATE_FIELD = re.compile(r"\b(cr2|cr3|rsp|idt|exitintinfo)=(0x[0-9a-f]+)")
IDT_BYTES = 256 * 16  # 256 gates of 16 bytes (64-bit mode)
# lab.invm.page_walk's word on CR2 in the guest's own tables, read from the paused guest after it.
_CR2_WALK = re.compile(r"its page walk: (?:[^;)]*?)\bcr2 0x[0-9a-f]+ (mapped at 0x[0-9a-f]+|NOT PRESENT at the \w+|not read)")
# The same words read again through level 1's nested tables (lab.invm.page_walk.nested_summary).
_NESTED = re.compile(r"level 1's nested tables(?: unread)?: [^;)]*")


def idt_unreadable(attempt_dir: Path, console: str) -> list[Evidence]:
    """`idt-unreadable` for every guest level 1 saw triple-fault with its last page fault inside its IDT."""
    found = []
    for m in _TRIPLE_FAULT.finditer(console):
        for exit_text in m[1].split("; "):
            state = dict(_STATE_FIELD.findall(exit_text))
            if "cr2" not in state or "idt" not in state:
                continue
            cr2, idt = int(state["cr2"], 16), int(state["idt"], 16)
            if idt <= cr2 < idt + IDT_BYTES:
                at = SHUTDOWN_AT.search(exit_text)
                vcpu = at[1] if at else "?"
                walked = _CR2_WALK.search(m[1])
                tables = f"; the guest's own tables: {walked[1]}" if walked else ""
                nested = _NESTED.search(m[1])
                if nested:
                    tables += f"; {nested[0]}"
                what = (f"level-2 vCPU {vcpu} triple-faulted reading its IDT (CR2 {cr2:#x} = IDT + {cr2 - idt:#x}, "
                        f"gate {(cr2 - idt) // 16}; EXITINTINFO {state.get('exitintinfo', '?')}{tables})")  # fmt: skip
                guest_lines = _read(attempt_dir / m[2]).splitlines()
                if nested and " differ: " in nested[0]:
                    # Level 1's nested tables gave the CPU other pages than the guest's: level 1's doing.
                    found.append(Evidence("nested-tables-differ", what, m[2], _last_line(guest_lines)))
                else:
                    found.append(Evidence("idt-unreadable", what, m[2], _last_line(guest_lines)))
    return found


PAGE_ADDRESS = 0x000F_FFFF_FFFF_F000  # CR3's page-table address (bits 12-51)
# A guest this large may have RAM above the PCI hole (4 GiB): its CR3 cannot be judged by size.
MAX_JUDGED_GUEST_MB = 2048


def guest_in_host_state(attempt_dir: Path, console: str) -> list[Evidence]:
    """`guest-in-host-state` for every guest level 1 saw triple-fault with a CR3 beyond its RAM."""
    try:
        cfg = json.loads(_read(attempt_dir / "level1-config.json") or "{}")
        ram = int(cfg.get("guest_mem_mb", 0)) << 20
    except (ValueError, TypeError, AttributeError):
        return []
    if not 0 < ram <= MAX_JUDGED_GUEST_MB << 20:
        return []
    found = []
    for m in _TRIPLE_FAULT.finditer(console):
        for exit_text in m[1].split("; "):
            state = dict(_STATE_FIELD.findall(exit_text))
            if "cr3" not in state or int(state["cr3"], 16) & PAGE_ADDRESS < ram:
                continue
            at = SHUTDOWN_AT.search(exit_text)
            rsp = f" (RSP {state['rsp']})" if "rsp" in state else ""
            what = (f"level-2 vCPU {at[1] if at else '?'} stopped with CR3 {state['cr3']}, beyond its {ram >> 20} MiB of RAM"
                    f"{rsp}: the CPU ran it with a state not its own")  # fmt: skip
            found.append(Evidence("guest-in-host-state", what, m[2], _last_line(_read(attempt_dir / m[2]).splitlines())))
    return found


def _last_line(lines: list[str]) -> int:
    """Where a guest's sign sits in its console: its last line (an empty console: its first)."""
    return len(lines) or 1


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def timeline_name(attempt_dir: Path) -> str:
    """The level-1 log that orders an attempt's events: its dmesg when level 1
    finished (every kernel message and the lab's failure marks), else its console."""
    dmesg = attempt_dir / "level1-dmesg.txt"
    return dmesg.name if dmesg.exists() and dmesg.stat().st_size else "level1-console.log"


def level2_consoles(attempt_dir: Path) -> list[Path]:
    """Every level-2 console of the attempt: the kept ones, and the runner's
    log of a boot whose console was never kept (level 1 died during it)."""
    kept = sorted(attempt_dir.glob("level2-console-*.log"))
    names = {p.name.removeprefix("level2-console-") for p in kept}
    cut = [p for p in sorted(attempt_dir.glob("logs-level1/[0-9][0-9][0-9]-level2-boot-*.log"))
           if p.name[4:].removeprefix("level2-boot-") not in names]  # fmt: skip
    return kept + cut


def find(
    attempt_dir: Path,
    mode: str,
    symbols: dict[str, int],
    marks: dict[str, int] | None = None,
    exit_before: Callable[[int], str | None] | None = None,
) -> list[Evidence]:
    """Every emulator sign in the attempt kept in `attempt_dir`; [] unless
    level 1 ran under TCG. `marks`: level 1's kernel's lab.landmarks.
    `exit_before`: the exiting instruction right before an address of the
    guest kernel (lab.exit_returns.GuestText), for `guest-resumed-past-exit`."""
    if mode != "tcg":
        return []
    found: list[Evidence] = []
    name = timeline_name(attempt_dir)
    text = _read(attempt_dir / name)
    console = _read(attempt_dir / "level1-console.log")
    line, code = null_percpu_oops(text, symbols)
    if line:
        found.append(Evidence("null-percpu", f"an oops read a NULL current_task through %gs ({code[:100]})", name, line))
    line, rip = wild_return_from_halt(text)
    if line:
        found.append(Evidence("wild-return-from-halt", f"an idle CPU came back from HLT to {rip}, which is no code", name, line))
    line, report = nmi_never_left(text)
    if line:
        found.append(Evidence("nmi-never-left", report[:120], name, line))
    line, rip = null_cs_frame(text)
    if line:
        found.append(Evidence("null-cs-frame", f"an oops frame with code segment 0 ({rip})", name, line))
    line, what = clock_from_guest(text)
    if line:
        found.append(Evidence("clock-from-guest", f"a splat stamped back in time: {what}", name, line))
    line, frame = irq_with_if_clear(text)
    if line:
        found.append(Evidence("irq-with-if-clear", f"an interrupt delivered with IF clear: {frame}", name, line))
    line, what = vcpu_fault_recursion(text)
    if line:
        found.append(Evidence("vcpu-fault-recursion", f"a vCPU thread's page-fault entry ran off its stack: {what}", name, line))
    level1_gs = gs_bases(text + "\n" + console)
    for guest in level2_consoles(attempt_dir):
        source = str(guest.relative_to(attempt_dir))
        guest_console = guest.read_text(errors="replace")
        line, what = guest_with_host_gs(guest_console, level1_gs, symbols)
        if line:
            found.append(Evidence("guest-with-host-gs", f"a level-2 page-fault handler ran with level 1's GS base ({what})", source, line))
        line, rip = null_cs_frame(guest_console)
        if line:
            found.append(Evidence("null-cs-frame", f"a level-2 oops frame with code segment 0 ({rip})", source, line))
        line, header = guest_null_current(guest_console)
        if line:
            found.append(Evidence("guest-null-current", f"a level-2 page-fault handler read a NULL current ({header})", source, line))
        line, frame = irq_with_if_clear(guest_console)
        if line:
            found.append(Evidence("irq-with-if-clear", f"a level-2 interrupt delivered with IF clear: {frame}", source, line))
    for dump in sorted(attempt_dir.glob("level1-cpus*.txt")):
        dumped = dump.read_text(errors="replace")
        cpus = stuck_in_guest(text + "\n" + console, dumped)
        if cpus:
            found.append(Evidence("stuck-in-guest", f"CPUs {cpus} stalled in level 1, running at CPL 3", dump.name, AT_END))
        if frame := next((ln for ln in dumped.splitlines() if ln.startswith(IRQ_WITH_IF_CLEAR_LINE)), ""):
            found.append(Evidence("irq-with-if-clear", frame.removeprefix(IRQ_WITH_IF_CLEAR_LINE + ": ")[:160], dump.name, AT_END))
    persistent = [d for d in sorted(attempt_dir.glob("level1-cpus*.txt")) if LOST_WAKEUP_LINE in _read(d)]
    if persistent:
        found.append(Evidence("lost-wakeup", "a CPU stayed halted with an interrupt pending and deliverable", persistent[0].name, AT_END))
    vmrun_return = (marks or {}).get(landmarks.VMRUN_RETURN)
    if vmrun_return is not None:
        found += _vmrun_return_loops(attempt_dir, vmrun_return)
        line, entry = irq_at_vmrun_return(text, symbols, vmrun_return)
        if line:
            found.append(Evidence("irq-at-vmrun-return", f"a host interrupt taken where GIF is clear: {entry}", name, line))
    if exit_before is not None:
        found += resumed_past_exit(attempt_dir, console, exit_before)
    found += idt_unreadable(attempt_dir, console)
    found += guest_in_host_state(attempt_dir, console)
    wedged = unkillable_running(console)
    if wedged:
        found.append(Evidence("unkillable-vcpu", wedged[:160], "level1-console.log", AT_END))
    return found
