"""The level-1 monitor dump against a fake HMP server (no VM)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from lab import monitor
from lab.runner import Runner
from lab.symbols import SymbolMap
from lab.vm import Level1Settings, vng_command

REGS = (
    "CPU#0\r\nRAX=0000000000000000 RIP=ffffffff81000120 RFL=00000002 CPL=0 HLT=0\r\n"
    "CPU#1\r\nRIP=ffffffff81000210 RFL=00000246 CPL=0 HLT=1\r\n"
)
# What QEMU 7.2 printed for a CPU it failed to wake (seen here), and an idle one.
LAPIC_STUCK = "dumping local APIC state for CPU 1\r\n\r\nISR\t (none)\r\nIRR\t 236 253 \r\n"
LAPIC_IDLE = "dumping local APIC state for CPU 0\r\n\r\nISR\t (none)\r\nIRR\t (none)\r\n"


def _fake_hmp(path: Path, commands: list[str], answers: dict[str, list[str]], connections: int = 0) -> threading.Thread:
    """A monitor that answers each command with the next of its answers (stop and cont: nothing)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    snapshots = len(answers["info registers -a"])  # each: stop, registers, one lapic per CPU, cont

    def serve() -> None:
        with server:
            for _ in range(connections or snapshots * (3 + len(answers) - 1)):
                conn, _ = server.accept()
                with conn:
                    conn.sendall(b"QEMU 7.2.0 monitor - type 'help' for more information\r\n(qemu) ")
                    cmd = conn.recv(1024).decode().strip()
                    commands.append(cmd)
                    answer = "" if cmd in ("stop", "cont") else answers[cmd].pop(0)
                    conn.sendall(cmd.encode() + b"\r\n" + answer.encode() + b"(qemu) ")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


SNAPSHOT = ["stop", "info registers -a", "info lapic 0", "info lapic 1", "cont"]
SYMBOLS = "ffffffff81000100 T svm_vcpu_run\nffffffff81000200 t native_safe_halt\nffffffff81000300 D data\n"


def test_dump_names_every_cpu_rip_and_a_cpu_qemu_did_not_wake(tmp_path: Path) -> None:
    sock = tmp_path / "mon.sock"
    commands: list[str] = []
    answers = {"info registers -a": [REGS, REGS], "info lapic 0": [LAPIC_IDLE] * 2, "info lapic 1": [LAPIC_STUCK] * 2}
    thread = _fake_hmp(sock, commands, answers)
    system_map = tmp_path / "System.map"
    system_map.write_text(SYMBOLS)
    summary = monitor.dump_cpus(sock, tmp_path / "cpus.txt", system_map, Runner(tmp_path / "logs"), recheck_after=0.1)
    thread.join(5)
    assert commands == SNAPSHOT * 2  # read with the VM stopped, twice
    assert summary.startswith("RIP ffffffff81000120 = svm_vcpu_run+0x20; RIP ffffffff81000210 = native_safe_halt+0x10")
    assert summary.endswith("CPUs [1] halted with interrupts pending (IRR [[236, 253]])")
    text = (tmp_path / "cpus.txt").read_text()
    assert "RFL=00000246" in text and "(qemu)" not in text and "\r" not in text
    assert "# info lapic 1" in text and "two snapshots 0.1 s apart): CPUs [1]" in text


# Runs 21a8 and 8f54 (level 1 silent for 300 s): both CPUs spinning on a lock of CPU 0's.
SPINNING = (
    "CPU#0\r\nRSP=ffffc90000003f68\r\nRIP=ffffffff81000120 RFL=00000002 CPL=0 HLT=0\r\n"
    "CPU#1\r\nRSP=00007ffd12345678\r\nRIP=0000000000401000 RFL=00000246 CPL=3 HLT=0\r\n"
)
# Read from the 16-byte line below RSP, so no line crosses into the guard page
# above the interrupt stack and its top words are read.
STACK = (
    "ffffc90000003f60: 0x0000000000000001 0xffffffff81000213\r\n"
    "ffffc90000003f70: 0xffff88813cc2bd40 0xffffffff81000305\r\n"
    "ffffc90000003f80: 0xffffffff82000000 0xffffffffa0001234\r\n"
    "ffffc90000003fe0: 0xffffc90000003ef0 0xffffc900002bbd08\r\n"  # its own frame pointer; the interrupted context's pt_regs
    "ffffc90000004000: Cannot access memory\r\n"
)
# The task stack the interrupt came in on: the interrupted RIP right after VMRUN.
TASK_STACK = (
    "ffffc900002bbd00: 0x0000000000000000 0xffffffff810003b0\r\n"  # pt_regs: ..., RIP,
    "ffffc900002bbd10: 0x0000000000000010 0x0000000000000046\r\n"  # CS, RFLAGS (IF clear),
    "ffffc900002bbd20: 0xffffc900002bbdc8 0x0000000000000018\r\n"  # RSP, SS
)
TEXT_SYMBOLS = (
    "ffffffff81000000 T _stext\nffffffff81000100 T queued_spin_lock_slowpath\nffffffff81000200 t tick_nohz_handler\n"
    "ffffffff81000300 t pvsched_cap_timer_fn\nffffffff81000310 T __svm_vcpu_run\nffffffff81000400 T _etext\nffffffff82000000 T _sinittext\n"
)


def test_a_spinning_cpu_gets_its_stack_read_and_its_kernel_text_words_named(tmp_path: Path) -> None:
    sock = tmp_path / "mon.sock"
    commands: list[str] = []
    answers = {"info registers -a": [SPINNING], "info lapic 0": [LAPIC_IDLE], "info lapic 1": [LAPIC_IDLE],
               "cpu 0": [""], "x /256gx 0xffffc90000003f60": [STACK], "x /256gx 0xffffc900002bbd00": [TASK_STACK]}  # fmt: skip
    thread = _fake_hmp(sock, commands, answers, connections=8)
    system_map = tmp_path / "System.map"
    system_map.write_text(TEXT_SYMBOLS)
    summary = monitor.dump_cpus(sock, tmp_path / "cpus.txt", system_map, Runner(tmp_path / "logs"), recheck_after=0.1)
    thread.join(5)
    # Only the CPU in kernel mode, read with the VM stopped, through that CPU's page tables.
    assert commands == ["stop", "info registers -a", "info lapic 0", "info lapic 1", "cpu 0", "x /256gx 0xffffc90000003f60",
                        "x /256gx 0xffffc900002bbd00", "cont"]  # fmt: skip
    text = (tmp_path / "cpus.txt").read_text()
    assert "ffffc90000003f68: ffffffff81000213 = tick_nohz_handler+0x13" in text
    assert "ffffc90000003f78: ffffffff81000305 = pvsched_cap_timer_fn+0x5" in text
    # Data, init text (freed after boot) and module addresses are not named.
    assert "= " not in "".join(line for line in text.splitlines() if "ffff88813cc2bd40" in line or "ffffffff82000000" in line)
    assert "ffffc900002bbd08: ffffffff810003b0 = __svm_vcpu_run+0xa0" in text
    assert "ffffc900002bbd08: a kernel-mode entry frame: RIP __svm_vcpu_run+0xa0, RFLAGS 0x46 (interrupts DISABLED)" in text
    assert summary.endswith("CPU#0 was entered at __svm_vcpu_run+0xa0, RFLAGS 0x46 (interrupts DISABLED); "
                            "CPU#0's stack names pvsched_cap_timer_fn")  # fmt: skip
    registers, lapics = monitor.split_dump(text)
    assert "CPU#1" in registers and lapics[1].strip().endswith("IRR\t (none)")


def test_the_boot_cpus_idle_stack_in_the_kernel_image_is_followed_too() -> None:
    # By hand against QEMU 7.2 (/tmp/stk/run.py): CPU 0's timer interrupt
    # stack saved a pointer into init_task's stack, which lies in the kernel
    # image, not in vmalloc space.
    top = (
        "ffffc90000003fe0: 0xffffffff81e03de8 0x0000000000000001\nffffc90000003ff0: 0xffffffff8151429a 0xffffffff81e03dd0\n"
        "ffffc90000004000: Cannot access memory\n"
    )
    text = range(0xFFFFFFFF81000000, 0xFFFFFFFF81800000)
    assert monitor.interrupted_stack(top, 0xFFFFC90000003F80, text) == 0xFFFFFFFF81E03DD0
    # A stack read whole without reaching a guard page (an idle task's, in the image) is followed nowhere.
    assert monitor.interrupted_stack(top.rsplit("ffffc90000004000", 1)[0], 0xFFFFC90000003F80, text) is None


def test_a_cpu_that_woke_by_the_second_snapshot_is_no_lost_wakeup(tmp_path: Path) -> None:
    sock = tmp_path / "mon.sock"
    commands: list[str] = []
    answers = {"info registers -a": [REGS, REGS], "info lapic 0": [LAPIC_IDLE] * 2, "info lapic 1": [LAPIC_STUCK, LAPIC_IDLE]}
    thread = _fake_hmp(sock, commands, answers)
    summary = monitor.dump_cpus(sock, tmp_path / "cpus.txt", None, Runner(tmp_path / "logs"), recheck_after=0.1)
    thread.join(5)
    assert "halted with interrupts pending" not in summary
    text = (tmp_path / "cpus.txt").read_text()
    assert monitor.LOST_WAKEUP_LINE not in text and "no lost wakeup" in text


def test_lost_wakeup_needs_halted_if_set_pending_and_nothing_in_service() -> None:
    halted_if = "CPU#0\nRIP=1 RFL=00000246 HLT=1\n"
    assert monitor.lost_wakeups(halted_if, [LAPIC_STUCK]) == [0]
    assert monitor.lost_wakeups(halted_if, [LAPIC_IDLE]) == []  # nothing pending: a plain idle CPU
    assert monitor.lost_wakeups("CPU#0\nRIP=1 RFL=00000046 HLT=1\n", [LAPIC_STUCK]) == []  # IF clear: masked
    assert monitor.lost_wakeups("CPU#0\nRIP=1 RFL=00000246 HLT=0\n", [LAPIC_STUCK]) == []  # running
    serving = LAPIC_STUCK.replace("ISR\t (none)", "ISR\t 236")
    assert monitor.lost_wakeups(halted_if, [serving]) == []  # in service: lower ones wait for its EOI
    assert monitor.lapic_vectors(LAPIC_STUCK, "IRR") == [236, 253]
    with_ppr = LAPIC_STUCK + "APR 0x00 TPR 0x10 DFR 0x0f LDR 0x00 PPR 0x10\r\n"
    assert monitor.lost_wakeups(halted_if, [with_ppr]) == [0]  # 236 is above priority class 1
    masked = LAPIC_STUCK.replace("236 253", "20") + "APR 0x00 TPR 0x10 DFR 0x0f LDR 0x00 PPR 0x10\r\n"
    assert monitor.lost_wakeups(halted_if, [masked]) == []  # vector 20 is masked by the priority


def test_unreachable_monitor_is_reported_not_raised(tmp_path: Path) -> None:
    assert monitor.dump_cpus(tmp_path / "absent.sock", tmp_path / "cpus.txt", None, Runner(tmp_path / "logs")).startswith(
        "monitor unreachable"
    )


def test_level1_gets_a_monitor_socket(tmp_path: Path) -> None:
    cmd = vng_command("vng", tmp_path / "bzImage", "tcg", Level1Settings(), "true", [], tmp_path / "m.sock")
    assert f"--qemu-opts=-monitor unix:{tmp_path / 'm.sock'},server=on,wait=off" in cmd


def test_qemu_threads_and_backtraces_of_a_real_process(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    import pytest

    marker = tmp_path / "pvsched-lab-l1-monitor-test.sock"
    # A stand-in for QEMU: a process called qemu-* whose command line names the monitor socket.
    fake_qemu = tmp_path / "qemu-system-x86_64"
    fake_qemu.symlink_to(sys.executable)
    child = subprocess.Popen([str(fake_qemu), "-c", "import time; time.sleep(30)", str(marker)])
    # vng, which started QEMU, has the socket on its command line too.
    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", str(marker)])
    try:
        # Until the stand-in sleeps: a loaded machine was still starting it after 0.2 s (state R).
        deadline = time.monotonic() + 20
        while "state S" not in monitor.qemu_threads(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert monitor.qemu_pid(marker) == child.pid
        assert monitor.qemu_pid(tmp_path / "other.sock") is None
        threads = monitor.qemu_threads(child.pid)
        assert threads.startswith(f"{child.pid} 'qemu-system-x86' state S wchan ")
        if not shutil.which("gdb"):
            pytest.skip("gdb not installed")
        trace = monitor.qemu_backtraces(child.pid, Runner(tmp_path / "logs"))
        assert f"gdb -p {child.pid}" in trace and "nanosleep" in trace
    finally:
        for proc in (child, launcher):
            proc.kill()
            proc.wait()


# Run d926 (debug profile, no VMAP_STACK): CPU 0's timer interrupt spinning on
# a lock its vCPU thread held, on an interrupt stack in the per-CPU area with no
# guard page above it; the pointer call_on_irqstack saved is 0xffff88810683f5c0.
D926_IRQ_STACK = """\
ffff888124609f50: 0xffffed10248c5479 0xffffffff81ed8ca2
ffff888124609f60: 0xffffffff813b942e 0xffff88812462a380
ffff888124609f70: 0xffff88812462a3cc 0xffffffff813b942e
ffff888124609f80: 0x0000000000000082 0xffff88812462a3e0
ffff888124609fd0: 0xffffffff811fafd8 0xffff88810683f5d8
ffff888124609fe0: 0x0000000000000000 0x0000000000000000
ffff888124609ff0: 0xffffffff81ec468c 0xffff88810683f5c0
ffff88812460a000: 0x0000300000000000 0x00000000fffffe00
ffff88812460a010: 0x2db775a000000000 0x0000000000007fff
"""


def _x_dump(memory: dict[int, int], start: int, words: int = 32) -> str:
    """An `x /Ngx` answer over `memory` (absent words read 0)."""
    return "".join(f"{a:016x}: 0x{memory.get(a, 0):016x} 0x{memory.get(a + 8, 0):016x}\n" for a in range(start, start + 8 * words, 16))


@pytest.mark.parametrize("flags", [0x46, 0x246])
def test_an_interrupt_stack_without_a_guard_page_is_followed_to_the_frame_it_saved(tmp_path: Path, flags: int) -> None:
    regs_at, rip = 0xFFFF88810683F5C0, 0xFFFFFFFF81000110
    task = {regs_at + monitor.PT_REGS_IP + 8 * k: w for k, w in enumerate([rip, 0x10, flags, 0xFFFF88810683F6B8, 0x18])}
    lock = {0xFFFF88812462A380: 0x1, 0xFFFF88812462A388: 0xFFFFFFFF81000100}  # the lock: no frame there
    sock, commands = tmp_path / "mon.sock", list[str]()
    answers = {
        "info registers -a": [registers := "CPU#0\nRSP=ffff888124609f50 CPL=0 HLT=0\n"],
        "cpu 0": [""],
        "x /256gx 0xffff888124609f50": [D926_IRQ_STACK],
        "x /256gx 0xffff88812462a380": [_x_dump(lock, 0xFFFF88812462A380)],
        "x /256gx 0xffff88810683f5d0": [_x_dump(task, 0xFFFF88810683F5D0)],
        "x /256gx 0xffff88810683f5c0": [_x_dump(task, regs_at)],
    }
    thread = _fake_hmp(sock, commands, answers, connections=5)
    text = range(0xFFFFFFFF81000000, 0xFFFFFFFF82000000)
    stacks = monitor.read_stacks(sock, registers, text)
    thread.join(5)
    # Each candidate above a return address is read until one holds an interrupt's frame: the lock and a
    # pointer into the frame are not one.
    assert commands == ["cpu 0", "x /256gx 0xffff888124609f50", "x /256gx 0xffff88812462a380",
                        "x /256gx 0xffff88810683f5d0", "x /256gx 0xffff88810683f5c0"]  # fmt: skip
    assert "# the stack it interrupted, from the pointer saved on it (its pt_regs at 0xffff88810683f5c0)" in stacks[0]
    system_map = tmp_path / "System.map"
    system_map.write_text("ffffffff81000000 T _stext\nffffffff81000100 T svm_vcpu_run\nffffffff82000000 T _etext\n")
    _, notes = monitor.stack_report(0, stacks[0], SymbolMap(system_map))
    state = "DISABLED" if flags == 0x46 else "enabled"
    assert notes[0] == f"CPU#0 was entered at svm_vcpu_run+0x10, RFLAGS {flags:#x} (interrupts {state})"


def test_a_stack_with_no_saved_frame_is_followed_nowhere() -> None:
    text = range(0xFFFFFFFF81000000, 0xFFFFFFFF82000000)
    candidates = monitor.saved_pointer_candidates(D926_IRQ_STACK, 0xFFFF888124609F50, text)
    assert candidates == [0xFFFF88812462A380, 0xFFFF88810683F5D8, 0xFFFF88810683F5C0]
    # Words that are no pt_regs: no frame.
    assert not monitor.saved_frame(_x_dump({}, 0xFFFF88810683F5C0), 0xFFFF88810683F5C0, text)


# Run de20 (level 1 wedged, both CPUs in queued_spin_lock_slowpath): CPU 0's
# APIC timer interrupt stack, and the idle task's stack it interrupted, where
# the timer came in on __switch_to_asm with IF clear.
DE20_CPU0 = """\
ffffc90000003f90: 0x0000000000000003 0x7fffffffffffffff
ffffc90000003fa0: 0xffffffff81145f37 0x0000000000000000
ffffc90000003fd0: 0x0000000000000000 0xffffffff810addad
ffffc90000003fe0: 0xffffffff81e03d48 0x0000000000000000
ffffc90000003ff0: 0xffffffff815142da 0xffffffff81e03d30
ffffc90000004000: Cannot access memory
# the stack it interrupted, from the pointer saved on it
ffffffff81e03d30: 0x0000000000000000 0x0000000000000000
ffffffff81e03d40: 0xffffffff8160134a 0xffff888103ddc750
ffffffff81e03d50: 0x0000000000000000 0xffffffff81e0a940
ffffffff81e03d60: 0xffff888103ddc000 0xffffc90000297e20
ffffffff81e03d70: 0xffff88813cc2bd40 0x0000000000000000
ffffffff81e03d80: 0x0000000000000000 0x0000000000000000
ffffffff81e03d90: 0x0000000000002001 0xffff88810004b7c0
ffffffff81e03da0: 0xffffffff81e0a940 0x0000000000000001
ffffffff81e03db0: 0xffffffff81e0a940 0xffff888103ddc000
ffffffff81e03dc0: 0xffffffffffffffff 0xffffffff81001f3b
ffffffff81e03dd0: 0x0000000000000010 0x0000000000000002
ffffffff81e03de0: 0xffffffff81e03df0 0x0000000000000018
ffffffff81e03df0: 0xffffffff81e0b098 0x0000000000000000
ffffffff81e03e20: 0xffffffff81517a61 0x0000000000000000
"""
# That kernel's System.map, the symbols the words above fall in.
DE20_SYMBOLS = """\
ffffffff81000000 T _stext
ffffffff81001f00 T __switch_to_asm
ffffffff810add00 t __sysvec_apic_timer_interrupt
ffffffff81145e8c T hrtimer_interrupt
ffffffff81514278 T sysvec_apic_timer_interrupt
ffffffff81517470 t __schedule
ffffffff81601190 T asm_exc_page_fault
ffffffff81601330 T asm_sysvec_apic_timer_interrupt
ffffffff81800000 T _etext
"""


@pytest.mark.parametrize(
    ("entry", "flags", "taken"),
    [
        ("0xffffffff8160134a", "0x0000000000000002", True),  # as de20 had it
        ("0xffffffff8160134a", "0x0000000000000202", False),  # IF set: an ordinary interrupt
        ("0xffffffff816011aa", "0x0000000000000002", False),  # a page fault may come with IF clear
    ],
)
def test_a_maskable_interrupt_taken_with_if_clear_is_named_in_the_dump(tmp_path: Path, entry: str, flags: str, taken: bool) -> None:
    system_map = tmp_path / "System.map"
    system_map.write_text(DE20_SYMBOLS)
    dump = DE20_CPU0.replace("0xffffffff8160134a", entry).replace("0x0000000000000010 0x0000000000000002", f"0x0000000000000010 {flags}")
    text, notes = monitor.stack_report(0, dump, SymbolMap(system_map))
    said = [line for line in text.splitlines() if line.startswith(monitor.IRQ_WITH_IF_CLEAR_LINE)]
    if taken:
        assert said == [
            f"{monitor.IRQ_WITH_IF_CLEAR_LINE}: CPU#0 RIP ffffffff81001f3b (__switch_to_asm+0x3b) "
            "by asm_sysvec_apic_timer_interrupt, frame at ffffffff81e03dc8"
        ]
        assert "CPU#0 took asm_sysvec_apic_timer_interrupt with IF clear at __switch_to_asm+0x3b" in notes
    else:
        assert said == [] and not any("with IF clear" in note for note in notes)


def test_a_fault_recursion_has_the_top_of_its_stack_read_where_it_began(tmp_path: Path) -> None:
    # As debug run 20261206T172501Z-ab7e's CPU 0: page faults at the same RIP, frame after frame, the
    # first out of a read from RSP; the task's own entry frame at its stack's top says which stack it is.
    rsp, top = 0xFFFF888107898100, 0xFFFF88810789C000
    fault, origin = 0xFFFFFFFF8100021C, 0xFFFFFFFF810003B0
    low: dict[int, int] = {}
    for k in range(4):
        at = rsp + 0x100 + k * 0xD0
        low.update(dict(zip(range(at, at + 40, 8), [fault, 0x10, 0x83, at + 0xD0, 0x18], strict=True)))
    high = dict(zip(range(top - 0x400, top - 0x400 + 40, 8), [origin, 0x10, 0x46, top - 0x300, 0x18], strict=True))
    regs = top - monitor.PT_REGS_SIZE + monitor.PT_REGS_IP
    high.update(dict(zip(range(regs, regs + 40, 8), [0x401000, 0x33, 0x246, 0x7FFD12345678, 0x2B], strict=True)))
    start = top - 8 * monitor.TOP_WORDS
    sock, commands = tmp_path / "mon.sock", list[str]()
    answers = {
        "cpu 0": [""],
        "x /256gx 0xffff888107898100": [_x_dump(low, rsp, 256)],
        f"x /{monitor.TOP_WORDS}gx {start:#x}": [_x_dump(high, start, monitor.TOP_WORDS)],
    }
    expected = list(answers)
    thread = _fake_hmp(sock, commands, {**answers, "info registers -a": [""]}, connections=3)
    text = range(0xFFFFFFFF81000000, 0xFFFFFFFF82000000)
    stacks = monitor.read_stacks(sock, f"CPU#0\nRSP={rsp:016x} CPL=0 HLT=0\n", text)
    thread.join(5)
    assert commands == expected
    assert f"# the top of that stack (its task's entry frame at {top - monitor.PT_REGS_SIZE:#x})" in stacks[0]
    system_map = tmp_path / "System.map"
    system_map.write_text(TEXT_SYMBOLS.replace("ffffffff81000200 t tick_nohz_handler", "ffffffff81000200 T exc_page_fault"))
    _, notes = monitor.stack_report(0, stacks[0], SymbolMap(system_map))
    assert notes[0] == "CPU#0 was entered at __svm_vcpu_run+0xa0, RFLAGS 0x46 (interrupts DISABLED)"
    # Two frames are no recursion: nothing more is read.
    few = {a: w for a, w in low.items() if a < rsp + 0x100 + 2 * 0xD0}
    answers = {"cpu 0": [""], "x /256gx 0xffff888107898100": [_x_dump(few, rsp, 256)]}
    (tmp_path / "mon.sock").unlink()
    commands.clear()
    thread = _fake_hmp(sock, commands, {**answers, "info registers -a": [""]}, connections=2)
    stacks = monitor.read_stacks(sock, f"CPU#0\nRSP={rsp:016x} CPL=0 HLT=0\n", text)
    thread.join(5)
    assert commands == list(answers) and "the top of that stack" not in stacks[0]
