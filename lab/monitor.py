"""Level 1's QEMU monitor: where its CPUs are when level 1 stalls.

A level-1 CPU wedged under TCG answers no NMI, so the kernel's own stall
report has no backtrace for it. QEMU still knows its registers: the lab
asks the monitor (HMP over a unix socket) for `info registers -a` and
names each RIP with the kernel's System.map, and for each CPU's local APIC
(`info lapic N`): a CPU halted with interrupts enabled while its APIC holds
a requested, unserviced interrupt is one QEMU failed to wake (seen here:
both level-1 CPUs idle for 8 minutes with their timer interrupts pending).

A wedged CPU's stack is read too (`x /Ngx` at its RSP, with the VM
stopped) and each word that points into the kernel's text is named, as the
kernel prints its `?` frames: not a reliable trace, but it says whose code
a spinning CPU came from (run 21a8: both CPUs spinning on one runqueue
lock, registers only).
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from lab.runner import Runner
from lab.symbols import SERIES_FUNCTION, SymbolMap

PROMPT = b"(qemu) "


def _read_until_prompt(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while not data.endswith(PROMPT) and time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


def hmp(path: Path, command: str, timeout: float = 10.0) -> str:
    """One HMP command's output (without the echo and prompt)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        _read_until_prompt(sock, deadline)  # banner
        sock.sendall(command.encode() + b"\n")
        out = _read_until_prompt(sock, deadline).decode(errors="replace")
    out = out.replace("\r", "")
    out = out.removesuffix(PROMPT.decode())
    # The first line is QEMU's echo of the command, full of readline escapes.
    return out.split("\n", 1)[1] if "\n" in out else ""


def annotate_rips(registers: str, symbols: SymbolMap | None) -> str:
    """Append `RIP=... <symbol+off>` lines after the register dump."""
    rips = re.findall(r"RIP=([0-9a-f]{16})", registers)
    if not symbols or not rips:
        return registers
    names = [f"CPU#{i}: RIP {rip} = {symbols.name(int(rip, 16))}" for i, rip in enumerate(rips)]
    return registers + "\n" + "\n".join(names) + "\n"


# Words read from each kernel-mode CPU's stack.
STACK_WORDS = 256


def kernel_mode_stacks(registers: str) -> list[tuple[int, int]]:
    """(CPU, RSP) of every CPU at CPL 0 in an `info registers -a` dump."""
    found = []
    for i, regs in enumerate(re.split(r"^CPU#\d+\s*$", registers, flags=re.M)[1:]):
        rsp = re.search(r"\bRSP=([0-9a-f]{16})", regs)
        if rsp and re.search(r"\bCPL=0\b", regs):
            found.append((i, int(rsp[1], 16)))
    return found


def _words(dump: str) -> list[tuple[int, int]]:
    """(address, value) of every word of an `x /Ngx` dump, in order."""
    found = []
    for line in dump.splitlines():
        where, _, values = line.partition(":")
        if re.fullmatch(r"[0-9a-f]+", where.strip()):
            found += [(int(where, 16) + 8 * k, int(v, 16)) for k, v in enumerate(re.findall(r"0x([0-9a-f]{16})", values))]
    return found


# Where x86-64 kernel stacks live (vmalloc space: task, IRQ and exception stacks).
STACK_SPACE = range(0xFFFFC90000000000, 0xFFFFE90000000000)
STACK_SIZE = 0x4000


# The kernel image: the boot CPU's idle task runs on init_task's stack there.
KERNEL_IMAGE = range(0xFFFFFFFF80000000, 0xFFFFFFFFC0000000)


def interrupted_stack(dump: str, rsp: int, text: range = range(0)) -> int | None:
    """On an interrupt stack, the saved stack pointer of what it interrupted:
    call_on_irqstack stores it in the stack's top word, the last one `x`
    could read below the guard page. A stack is in vmalloc space, or in the
    kernel image outside its `text` (the boot CPU's idle task runs on
    init_task's stack there)."""
    words = _words(dump)
    if not words or "Cannot access memory" not in dump:
        return None
    top = words[-1][1]
    if (top in STACK_SPACE or (top in KERNEL_IMAGE and top not in text)) and abs(top - rsp) > STACK_SIZE:
        return top
    return None


KERNEL_CS, KERNEL_SS, X86_EFLAGS_IF = 0x10, 0x18, 0x200
USER_CS, USER_SS = 0x33, 0x2B

# The direct map: a kernel without VMAP_STACK (the debug profile's) keeps its
# task and interrupt stacks there, with no guard page to end a read.
DIRECT_MAP = range(0xFFFF888000000000, 0xFFFFC88000000000)
# Where struct pt_regs keeps the hardware frame (ip, cs, flags, sp, ss).
PT_REGS_IP = 16 * 8
# Candidate saved pointers tried on a stack with no guard page (one read each).
MAX_SAVED_CANDIDATES = 4


def saved_pointer_candidates(dump: str, rsp: int, text: range) -> list[int]:
    """Words that may be the stack pointer call_on_irqstack saved on an
    interrupt stack with no guard page above it (a kernel without VMAP_STACK,
    run d926): each right above a word of kernel text (its return address),
    pointing into the direct map or vmalloc space far from RSP. Only a
    candidate with a pt_regs frame where it points is taken (saved_frame)."""
    words = _words(dump)
    found = []
    for (_, ret), (_, saved) in zip(words, words[1:], strict=False):
        far = abs(saved - rsp) > STACK_SIZE
        if ret in text and saved % 8 == 0 and far and (saved in DIRECT_MAP or saved in STACK_SPACE) and saved not in found:
            found.append(saved)
    return found[:MAX_SAVED_CANDIDATES]


def saved_frame(dump: str, at: int, text: range) -> bool:
    """Whether the words at `at` hold a pt_regs whose hardware frame is an
    interrupt's: RIP in kernel text with the kernel's CS and SS, or the
    user's CS and SS."""
    words = dict(_words(dump))
    frame = [words.get(at + PT_REGS_IP + 8 * k) for k in range(5)]
    if None in frame:
        return False
    rip, cs, flags, _, ss = (w or 0 for w in frame)
    return _kernel_frame(rip, cs, flags, ss, text) or (cs == USER_CS and ss == USER_SS and _rflags(flags))


def _rflags(value: int) -> bool:
    """Whether a word can be RFLAGS: bit 1 always set, nothing above ID (bit 21)."""
    return bool(value & 0x2) and value < 1 << 22


def _kernel_frame(rip: int, cs: int, flags: int, ss: int, text: range) -> bool:
    """Whether a hardware frame's RIP, CS, RFLAGS and SS are a kernel-mode one's."""
    return rip in text and cs == KERNEL_CS and ss == KERNEL_SS and _rflags(flags)


SERIES = re.compile(SERIES_FUNCTION)

# A maskable interrupt's entry (not an exception's, not the NMI's).
MASKABLE_ENTRY = re.compile(r"asm_(?:sysvec_\w+|common_interrupt)")
# From a hardware frame's RIP down to the entry's call into its C handler:
# orig_ax and the 15 saved registers of pt_regs, then the return address.
ENTRY_RETURN_BELOW_FRAME = 17 * 8
# Written into the dump for each such frame (lab.emulator_faults reads it).
IRQ_WITH_IF_CLEAR_LINE = "a maskable interrupt taken with IF clear"


def entry_frames(words: list[tuple[int, int]], text: range) -> list[tuple[int, int, int]]:
    """(address, RIP, RFLAGS) of the hardware frames of interrupts or
    exceptions taken in kernel mode (RIP in kernel text, CS 0x10, RFLAGS,
    RSP, SS 0x18): one pushed by an interrupt with IF clear is one a
    correct CPU never takes."""
    frames = []
    for i in range(len(words) - 4):
        (where, rip), (_, cs), (_, flags), _, (_, ss) = words[i : i + 5]
        if _kernel_frame(rip, cs, flags, ss, text):
            frames.append((where, rip, flags))
    return frames


def stack_report(cpu: int, dump: str, symbols: SymbolMap | None) -> tuple[str, list[str]]:
    """One CPU's stack sections for the dump file, and the summary's notes on
    it: its outermost entry frame, and the series' functions it names."""
    heading = f"\n# CPU#{cpu} stack: the words that name kernel text (like the kernel's '?' frames)\n"
    raw = f"\n# CPU#{cpu} stack: x /{STACK_WORDS}gx at RSP\n{dump}"
    if symbols is None:
        return f"{heading}(no System.map)\n{raw}", []
    words = _words(dump)
    kernel = [(where, value) for where, value in words if value in symbols.text]
    text, notes = "", []
    if entries := entry_frames(words, symbols.text):
        said = [f"{symbols.name(rip)}, RFLAGS {flags:#x} (interrupts {'enabled' if flags & X86_EFLAGS_IF else 'DISABLED'})"
                for _, rip, flags in entries]  # fmt: skip
        listing = "\n".join(
            f"{where:016x}: a kernel-mode entry frame: RIP {what}" for (where, _, _), what in zip(entries, said, strict=True)
        )
        text += f"\n# CPU#{cpu} stack: entry frames (RIP, CS, RFLAGS, RSP, SS)\n{listing}\n"
        notes.append(f"CPU#{cpu} was entered at {said[-1]}")
    if ours := sorted({name for name in (symbols.function(v) for _, v in kernel) if SERIES.fullmatch(name)}):
        notes.append(f"CPU#{cpu}'s stack names {', '.join(ours)}")
    for where, rip, entry in if_clear_interrupts(entries, dict(words), symbols):
        text += f"{IRQ_WITH_IF_CLEAR_LINE}: CPU#{cpu} RIP {rip:016x} ({symbols.name(rip)}) by {entry}, frame at {where:016x}\n"
        notes.append(f"CPU#{cpu} took {entry} with IF clear at {symbols.name(rip)}")
    named = "\n".join(f"{where:016x}: {value:016x} = {symbols.name(value)}" for where, value in kernel)
    return f"{text}{heading}{named or '(no word names kernel text)'}\n{raw}", notes


# A stack word stack_report() named as a function of the series.
_OUR_NAMED_WORD = re.compile(rf"^[0-9a-f]{{16}}: [0-9a-f]{{16}} = {SERIES_FUNCTION}\+0x[0-9a-f]+.*$", re.M)


def our_named_word(dump: str) -> str:
    """The first stack word of a dump_cpus() file named as our code, or ''."""
    m = _OUR_NAMED_WORD.search(dump)
    return m[0] if m else ""


def if_clear_interrupts(entries: list[tuple[int, int, int]], at: dict[int, int], symbols: SymbolMap) -> list[tuple[int, int, str]]:
    """(frame address, RIP, entry) of every entry frame (entry_frames()) with
    IF clear whose pt_regs sits right above a maskable interrupt entry's call
    into its handler (`at`: the stack's words by address): the CPU delivered
    that interrupt with IF clear, which a correct CPU never does (run de20:
    the APIC timer inside __schedule(), which then waited for the runqueue
    lock the interrupted switch held)."""
    found = []
    for where, rip, flags in entries:
        ret = at.get(where - ENTRY_RETURN_BELOW_FRAME, 0)
        entry = symbols.function(ret) if ret in symbols.text else ""
        if not flags & X86_EFLAGS_IF and MASKABLE_ENTRY.fullmatch(entry):
            found.append((where, rip, entry))
    return found


def read_stacks(path: Path, registers: str, text: range = range(0)) -> dict[int, str]:
    """CPU -> the `x` dump of its stack, for every CPU in kernel mode, and of
    the stack it interrupted if it runs on another; the VM stopped."""
    stacks = {}
    for cpu, rsp in kernel_mode_stacks(registers):
        hmp(path, f"cpu {cpu}")  # the monitor's CPU: `x` reads through its page tables
        words = hmp(path, f"x /{STACK_WORDS}gx {_line_aligned(rsp):#x}")
        if (below := interrupted_stack(words, rsp, text)) is not None:
            below_words = hmp(path, f"x /{STACK_WORDS}gx {_line_aligned(below):#x}")
            words += f"# the stack it interrupted, from the pointer saved on it\n{below_words}"
        else:
            for candidate in saved_pointer_candidates(words, rsp, text):
                below_words = hmp(path, f"x /{STACK_WORDS}gx {_line_aligned(candidate):#x}")
                if saved_frame(below_words, candidate, text):
                    words += f"# the stack it interrupted, from the pointer saved on it (its pt_regs at {candidate:#x})\n{below_words}"
                    break
        stacks[cpu] = words + _stack_top(path, words, text)
    return stacks


# A fault recursion (a bad GS base: every per-CPU read faults) fills the
# stack with the same frame until it overflows; where it began is near the
# stack's top, out of a read from RSP (debug run 20261206T172501Z-ab7e: 10
# page-fault frames seen, the first out of sight).
RECURSION_FRAMES = 3
THREAD_SIZES = (0x4000, 0x8000)  # x86-64 task stacks: 16 KiB, 32 KiB under KASAN; aligned to their size
TOP_WORDS = 1024
PT_REGS_SIZE = 21 * 8  # the task's own entry frame sits right below its stack's top


def _stack_top(path: Path, words: str, text: range) -> str:
    """The top of the task stack a fault recursion is on, when the words read
    show one: the last stack read, rounded up to each task stack size, whose
    top holds the task's own user-mode entry frame."""
    read = _words(words)
    if len(entry_frames(read, text)) < RECURSION_FRAMES:
        return ""
    last = read[-1][0]
    for size in THREAD_SIZES:
        top = (last | (size - 1)) + 1
        if top - last < 8:
            continue
        start = max(top - 8 * TOP_WORDS, last + 8)
        dump = hmp(path, f"x /{(top - start) // 8}gx {start:#x}")
        frame = dict(_words(dump))
        cs, ss = frame.get(top - PT_REGS_SIZE + PT_REGS_IP + 8), frame.get(top - PT_REGS_SIZE + PT_REGS_IP + 32)
        if cs == USER_CS and ss == USER_SS:
            return f"# the top of that stack (its task's entry frame at {top - PT_REGS_SIZE:#x}), where the recursion began\n{dump}"
    return ""


def _line_aligned(addr: int) -> int:
    """`x /Ngx` prints two words a line and fails a whole line that crosses
    into an unmapped page: from a 16-byte boundary no line crosses one, so
    the last words below a stack's guard page are read too (run 8f54 lost
    the interrupt stack's top word, the interrupted context's pointer)."""
    return addr & ~0xF


def lapic_vectors(lapic: str, register: str) -> list[int]:
    """The vectors set in one register (IRR, ISR) of an `info lapic` dump."""
    for line in lapic.splitlines():
        if line.startswith(register):
            return [int(v) for v in line.split()[1:] if v.isdigit()]
    return []


# Written into the dump when lost_wakeups() names CPUs (lab.emulator_faults reads it).
LOST_WAKEUP_LINE = "halted with a pending, deliverable interrupt"


def _waiting_interrupts(registers: str, lapics: list[str]) -> list[tuple[int, str]]:
    """(CPU, its registers) of every CPU with IF set whose APIC has a requested
    interrupt above its processor priority (PPR) and none in service."""
    cpus = re.split(r"^CPU#\d+\s*$", registers, flags=re.M)[1:]
    found = []
    for i, (regs, lapic) in enumerate(zip(cpus, lapics, strict=False)):
        flags = re.search(r"RFL=([0-9a-f]+)", regs)
        ppr = re.search(r"\bPPR 0x([0-9a-f]+)", lapic)
        deliverable = [v for v in lapic_vectors(lapic, "IRR") if ppr is None or v >> 4 > int(ppr[1], 16) >> 4]
        if flags and int(flags[1], 16) & 0x200 and deliverable and not lapic_vectors(lapic, "ISR"):
            found.append((i, regs))
    return found


def lost_wakeups(registers: str, lapics: list[str]) -> list[int]:
    """CPUs halted with such an interrupt waiting: a correct CPU would have taken it."""
    return [i for i, regs in _waiting_interrupts(registers, lapics) if "HLT=1" in regs]


def running_with_interrupt_pending(registers: str, lapics: list[str]) -> list[int]:
    """CPUs running at CPL 3 with such an interrupt waiting: in user mode
    (level 1's or, under KVM, level 2's, whose physical interrupts KVM
    intercepts) a correct CPU takes it at the next instruction."""
    return [i for i, regs in _waiting_interrupts(registers, lapics) if "HLT=1" not in regs and re.search(r"\bCPL=3\b", regs)]


def split_dump(dump: str) -> tuple[str, list[str]]:
    """A dump_cpus() file: its registers, and each CPU's `info lapic` in CPU order."""
    dump = re.split(r"^# CPU#\d+ stack", dump, maxsplit=1, flags=re.M)[0]
    registers, *lapics = re.split(r"^# info lapic \d+\s*$", dump, flags=re.M)
    return registers, lapics


def qemu_pid(monitor: Path, proc: Path = Path("/proc")) -> int | None:
    """The QEMU process serving `monitor`: its path is on QEMU's command line
    (and on vng's, which started QEMU: the program's name tells them apart)."""
    needle = str(monitor).encode()
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(argv[0].decode(errors="replace")).name.startswith("qemu") and any(needle in arg for arg in argv):
            return int(cmdline.parent.name)
    return None


def qemu_threads(pid: int, proc: Path = Path("/proc")) -> str:
    """One line per thread of QEMU: name ("CPU 0/TCG"), state and where it sleeps in the host kernel.

    For a lost wakeup this tells a vCPU thread QEMU put to sleep on its
    halt condition (no work, as QEMU judged it; `futex_wait` in state S)
    from one that is running or blocked elsewhere."""
    lines = []
    for task in sorted(proc.glob(f"{pid}/task/[0-9]*"), key=lambda t: int(t.name)):
        try:
            name = (task / "comm").read_text().strip()
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            wchan = (task / "wchan").read_text().strip() or "-"
        except OSError:
            continue
        lines.append(f"{task.name} {name!r} state {state} wchan {wchan}")
    return "\n".join(lines)


def qemu_backtraces(pid: int, runner: Runner, timeout: float = 60.0) -> str:
    """Every QEMU thread's user-space backtrace, when gdb is installed (QEMU is
    stripped, so frames in it are addresses; libc's name the wait)."""
    gdb = runner.which("gdb")
    if not gdb:
        return "gdb not installed: no backtraces (apt-get install gdb)"
    cmd = [gdb, "-p", str(pid), "-batch", "-nx", "-ex", "set pagination off", "-ex", "thread apply all bt 12"]
    done = runner.run(cmd, f"backtraces of qemu {pid}", timeout=timeout, check=False)
    if done.timed_out:
        return f"gdb did not finish in {timeout:.0f} s: {' '.join(cmd)}"
    return f"$ {' '.join(cmd)}\n{done.output}"


def _snapshot(path: Path, stacks: dict[int, str] | None = None, text: range = range(0)) -> tuple[str, list[str]]:
    """Registers and local APICs of every CPU, read with the VM stopped so
    the two describe one instant (a CPU whose timer just fired is not caught
    between its IRR update and its wakeup); into `stacks`, the kernel-mode
    CPUs' stacks of that instant."""
    hmp(path, "stop")
    try:
        regs = hmp(path, "info registers -a")
        ncpus = len(re.findall(r"^CPU#\d+", regs, flags=re.M))
        lapics = [hmp(path, f"info lapic {i}") for i in range(ncpus)]
        if stacks is not None:
            stacks.update(read_stacks(path, regs, text))
    finally:
        hmp(path, "cont")
    return regs, lapics


def _pending(regs: str, lapics: list[str]) -> dict[int, list[int]]:
    return {cpu: lapic_vectors(lapics[cpu], "IRR") for cpu in lost_wakeups(regs, lapics)}


def dump_cpus(path: Path, dest: Path, system_map: Path | None, runner: Runner, recheck_after: float = 1.5) -> str:
    """Write every CPU's registers (named RIPs) and local APIC to dest; returns a one-line summary.

    A CPU is reported as a lost wakeup only if a second snapshot, taken
    after `recheck_after` seconds of running, still shows it halted with the
    same interrupts pending: once is a race, twice is a CPU QEMU does not wake."""
    stacks: dict[int, str] = {}
    symbols = SymbolMap(system_map) if system_map and system_map.exists() else None
    try:
        regs, lapics = _snapshot(path, stacks, symbols.text if symbols else range(0))
        first = _pending(regs, lapics)
        if first:
            time.sleep(recheck_after)
            regs2, lapics2 = _snapshot(path)
            again = _pending(regs2, lapics2)
            still = {cpu: vectors for cpu, vectors in first.items() if again.get(cpu) == vectors}
        else:
            still = {}
    except OSError as exc:
        return f"monitor unreachable: {exc}"
    text = annotate_rips(regs, symbols)
    for i, lapic in enumerate(lapics):
        text += f"\n# info lapic {i}\n{lapic}"
    lost = sorted(still)
    if first and not lost:
        text += f"\nCPUs {sorted(first)} were halted with interrupts pending, but not {recheck_after} s later: no lost wakeup\n"
    if lost:
        text += f"\n{LOST_WAKEUP_LINE} (QEMU did not wake them, in two snapshots {recheck_after} s apart): CPUs {lost}\n"
        # Where QEMU's own threads are then: asleep on the halt condition, or stuck elsewhere.
        if (pid := qemu_pid(path)) is not None:
            text += f"\n# QEMU {pid}: threads\n{qemu_threads(pid)}\n\n# QEMU {pid}: backtraces\n{qemu_backtraces(pid, runner)}\n"
    notes = []
    for cpu, dump in stacks.items():  # last: split_dump() ends the last APIC at the first of these
        section, said = stack_report(cpu, dump, symbols)
        text += section
        notes += said
    dest.write_text(text)
    named = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("CPU#") and ": RIP" in line]
    summary = "; ".join(named) or f"registers in {dest.name}"
    if lost:
        summary += f"; CPUs {lost} halted with interrupts pending (IRR {[still[i] for i in lost]})"
    if notes:
        summary += "; " + "; ".join(notes)
    return summary
