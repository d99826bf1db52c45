"""Evidence that an attempt was lost to the emulated CPU, not to a kernel.

Level 1 runs under QEMU TCG here, and TCG's nested SVM sometimes mishandles
interrupts around VMRUN/#VMEXIT (seen with QEMU 7.2 and 10.0; README,
"Known emulator faults"). Six signs point at the emulator rather than at
the kernels under test:

- `null-percpu`: an oops whose faulting instruction dereferences a value
  just read through %gs, and that value is 0. %gs:current_task is never 0
  while the kernel runs with its own GS base; it reads 0 when the CPU runs
  kernel code with the level-2 guest's GS base, i.e. an interrupt taken
  between KVM's VMLOAD of the guest's state and of the host's, while GIF
  is clear. (A KVM that failed to restore the host's GS base would show
  the same; our patches do not touch that path.)
- `null-cs-frame`: an oops at either level whose saved frame has code
  segment 0 (`RIP: 0000:...`). A 64-bit kernel cannot run with a null CS,
  so no correct CPU pushes one; seen in a level-2 guest under level 1's
  KVM on TCG, with an exception frame shifted as if an event had been
  injected with the wrong error-code flag.
- `nmi-never-left`: "scheduling while atomic" with the NMI bits of the
  preempt count set. No NMI handler schedules, so the count says an NMI
  was entered and its exit never ran: what happens when NMIs are not kept
  blocked until the handler's IRET (seen with a CR2 at the bottom of a
  CPU-entry-area IST stack, the context-tracking WARNING after it, as
  after `null-percpu`).
- `stuck-in-guest`: level 1 reported an RCU stall on a CPU that its CPU
  dump shows running at CPL 3. Level 1 counts a tick taken in user mode,
  or in a guest, as a quiescent state, and KVM intercepts every interrupt
  and NMI of a running guest: a correct CPU leaves the level-2 guest at
  the next tick. Seen here with the guest's user code on that CPU for
  minutes, deaf to the stall report's NMI.
- `lost-wakeup`: the lab's monitor dump found a CPU halted with interrupts
  enabled, an interrupt above its priority requested in its local APIC and
  none in service: a correct CPU takes that interrupt.
- `unkillable-vcpu`: level 1's watchdog found a killed VMM still running
  long after SIGKILL (a CPU that never leaves its guest: KVM checks for
  signals at every exit, and every host interrupt forces one).

An attempt with such evidence is rerun and its splats are listed with the
evidence, not hidden; splats without evidence, and any in the last
attempt, fail the run.
"""

from __future__ import annotations

import re
from pathlib import Path

from lab.invm.watchdog import WEDGED
from lab.monitor import LOST_WAKEUP_LINE

# "Code: ... 65 48 8b 05 xx xx xx xx <48> 8b ..." : mov %gs:disp32,%rax
# immediately followed by the faulting load through %rax.
_GS_LOAD_THEN_FAULT = re.compile(r"Code: .*\b65 48 8b 05 (?:[0-9a-f]{2} ){4}<48> 8b ")
_RAX_ZERO = re.compile(r"\bRAX: 0{16}\b")
# "BUG: scheduling while atomic: comm/pid/0x00110000": the preempt count.
_SCHED_ATOMIC = re.compile(r"BUG: scheduling while atomic: .*/(0x[0-9a-f]+)\s*$", re.MULTILINE)
_NMI_MASK = 0x00F00000  # include/linux/preempt.h: NMI_BITS 4 at NMI_SHIFT 20
# "rcu: \t0-...0: (4696 ticks this GP) ...": a stalled CPU.
_RCU_STALLED_CPU = re.compile(r"rcu:\s+(\d+)-\S*: \(")
# A CPU's header and its RIP line in the monitor dump (lab.monitor).
_DUMP_CPU = re.compile(r"^CPU#(\d+)\n(?:.*\n){0,6}?RIP=\S+ .*\bCPL=(\d)", re.MULTILINE)
# The oops header's "RIP: CS:address" with CS 0.
_NULL_CS_RIP = re.compile(r"\bRIP: 0000:\S+")


def _is_null_percpu_code(lines: list[str], i: int) -> bool:
    """lines[i] is the Code line of an oops that read NULL through %gs (the
    register dump follows it within a few lines)."""
    return bool(_GS_LOAD_THEN_FAULT.search(lines[i])) and any(_RAX_ZERO.search(after) for after in lines[i + 1 : i + 4])


def null_percpu_oops(console: str) -> str:
    """The Code line of an oops that read NULL through %gs, or ''."""
    lines = console.splitlines()
    return next((lines[i].strip() for i in range(len(lines)) if _is_null_percpu_code(lines, i)), "")


def null_cs_frame(console: str) -> str:
    """The RIP line of an oops whose frame says CS was 0, or ''."""
    m = _NULL_CS_RIP.search(console)
    return m[0] if m else ""


def nmi_never_left(console: str) -> str:
    """The report of a task that scheduled with the preempt count inside an NMI, or ''."""
    for m in _SCHED_ATOMIC.finditer(console):
        if int(m[1], 16) & _NMI_MASK:
            return m[0].strip()
    return ""


def stuck_in_guest(console: str, cpu_dump: str) -> list[int]:
    """CPUs level 1 reports stalled that the dump shows at CPL 3."""
    stalled = {int(m[1]) for m in _RCU_STALLED_CPU.finditer(console)}
    user = {int(m[1]) for m in _DUMP_CPU.finditer(cpu_dump) if m[2] == "3"}
    return sorted(stalled & user)


def fault_line(console: str) -> int:
    """The 1-based line of the first oops-type evidence in a console (the
    `null-percpu` Code line, the `nmi-never-left` report, a `null-cs-frame`
    RIP), or 0. From there on the machine is known broken."""
    lines = console.splitlines()
    for i, line in enumerate(lines):
        if _is_null_percpu_code(lines, i) or _NULL_CS_RIP.search(line) or nmi_never_left(line + "\n"):
            return i + 1
    return 0


def _read(attempt_dir: Path, pattern: str) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(attempt_dir.glob(pattern)))


def evidence(attempt_dir: Path, mode: str) -> list[str]:
    """Why the attempt kept in `attempt_dir` is the emulator's fault; [] when nothing says so."""
    if mode != "tcg":
        return []
    found = []
    texts = _read(attempt_dir, "level1-console.log") + "\n" + _read(attempt_dir, "level1-dmesg.txt")
    code = null_percpu_oops(texts)
    if code:
        found.append(f"null-percpu: an oops read NULL through %gs ({code[:120]})")
    nmi = nmi_never_left(texts)
    if nmi:
        found.append(f"nmi-never-left: {nmi[:120]}")
    rip = null_cs_frame(texts + "\n" + _read(attempt_dir, "level2-*"))
    if rip:
        found.append(f"null-cs-frame: an oops frame with code segment 0 ({rip})")
    dumps = {path.name: path.read_text(errors="replace") for path in sorted(attempt_dir.glob("level1-cpus*.txt"))}
    stuck = next(((name, cpus) for name, dump in dumps.items() if (cpus := stuck_in_guest(texts, dump))), None)
    if stuck:
        found.append(f"stuck-in-guest: CPUs {stuck[1]} stalled in level 1, running at CPL 3 in {stuck[0]}")
    halted = next((name for name, dump in dumps.items() if LOST_WAKEUP_LINE in dump), None)
    if halted:
        found.append(f"lost-wakeup: a CPU halted with an interrupt pending and deliverable ({halted})")
    # A stuck wait alone is no evidence (a kernel bug can strand a thread);
    # the CPU dump taken then says whether a wakeup was lost.
    wedged = next((line for line in texts.splitlines() if WEDGED in line and "survives SIGKILL" in line), "")
    if wedged:
        found.append(f"unkillable-vcpu: {wedged.strip()[:160]}")
    return found
