from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.invm import page_walk, reset_watch

# Stress run 22f7's first user-mode triple fault, as the probe printed it.
STATE_22F7 = ("rip=0x52bc4f rsp=0x7ffe55769090 cr2=0xfffffe0000000080 cr3=0x97d000 cpl=3 "
              "idt=0xfffffe0000000000 tr=0xfffffe000003e000 exitintinfo=0x800000ec exitinfo1=0x0")  # fmt: skip
TRACE_22F7 = (
    " qemu-system-x86-412 [001] d..1.  95.250331: kvm_exit: vcpu 1 reason shutdown rip 0x52bc4f "
    "info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000\n"
    f" qemu-system-x86-412 [001] d..1.  95.250340: lab_shutdown_state: (shutdown_interception+0x0/0x90) {STATE_22F7}\n"
)
IDT_VA = 0xFFFFFE0000000000
CR3 = 0x97D000


def _tables(idt_pte: int) -> dict[int, int]:
    """Guest memory holding the walk of the IDT's page from CR3 0x97d000 (PGD 508, PUD 0, PMD 0, PTE 0)."""
    return {
        CR3 + 8 * 508: 0x2000 | 0x67,
        0x2000 + 8 * 0: 0x3000 | 0x67,
        0x3000 + 8 * 0: 0x4000 | 0x63,
        0x4000 + 8 * 0: idt_pte,
    }


def _reader(memory: dict[int, int]) -> Callable[[int], int]:
    def read(gpa: int) -> int:
        return memory.get(gpa, 0)

    return read


def test_a_mapped_idt_walks_to_its_page() -> None:
    w = page_walk.walk(_reader(_tables(0x8000_0000_0123_4161)), CR3 | 0x5, IDT_VA + 0x80, "gate 8")
    assert w.gpa == 0x1234080
    assert [s.level for s in w.steps] == ["pgd", "pud", "pmd", "pte"]
    assert w.brief() == "gate 8 0xfffffe0000000080 mapped at 0x1234080"
    assert "pte 0x8000000001234161" in w.describe()


def test_an_unmapped_page_says_at_which_level() -> None:
    w = page_walk.walk(_reader(_tables(0)), CR3, IDT_VA + 0x80, "gate 8")
    assert w.gpa is None
    assert w.outcome() == "NOT PRESENT at the pte"
    memory = _tables(0x1234161)
    del memory[0x2000]
    assert page_walk.walk(_reader(memory), CR3, IDT_VA, "idt").outcome() == "NOT PRESENT at the pud"


def test_a_large_page_ends_the_walk() -> None:
    memory = _tables(0)
    memory[0x3000] = 0x4060_0000 | 0x80 | 0x63  # a 2 MiB page at the PMD
    w = page_walk.walk(_reader(memory), CR3, IDT_VA + 0x12345, "idt")
    assert w.gpa == 0x4060_0000 + 0x12345
    assert len(w.steps) == 3


def test_memory_that_cannot_be_read_is_said() -> None:
    def unreadable(gpa: int) -> int:
        raise OSError("Cannot access memory")

    w = page_walk.walk(unreadable, CR3, IDT_VA, "idt")
    assert w.outcome() == "not read" and "pgd unreadable at 0x97dfe0" in w.describe()


def test_the_addresses_of_a_probed_triple_fault() -> None:
    wanted = dict(page_walk.addresses(STATE_22F7))
    assert wanted["cr2"] == IDT_VA + 0x80
    assert wanted["the IDT's gate 236"] == IDT_VA + 16 * 236
    assert wanted["the IDT's #DF gate"] == IDT_VA + 0x80
    assert wanted["tr"] == 0xFFFFFE000003E000
    # No event being delivered (EXITINTINFO not valid): no gate of its own.
    assert not any("gate 0" in what for what, _ in page_walk.addresses(STATE_22F7.replace("0x800000ec", "0x0")))
    assert page_walk.walks(_reader({}), "rip=0x1") == []  # no CR3: nothing to walk


def test_xp_output_is_parsed_or_refused() -> None:
    assert page_walk.parse_xp("000000000097dff0: 0x0000000000002067\r\n", 0x97DFF0) == 0x2067
    with pytest.raises(OSError):
        page_walk.parse_xp("Cannot access memory\r\n", 0x97DFF0)
    with pytest.raises(OSError):
        page_walk.parse_xp("0000000000001000: 0x0000000000002067\r\n", 0x97DFF0)  # another address


class FakeQemu(threading.Thread):
    """A QMP server on a UNIX socket that sends one SHUTDOWN event, answers
    `xp` from `memory` and records the commands it got."""

    def __init__(self, sock: Path, reason: str, memory: dict[int, int]) -> None:
        super().__init__(daemon=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(sock))
        self.server.listen(1)
        self.reason, self.memory = reason, memory
        self.commands: list[str] = []

    def run(self) -> None:
        conn, _ = self.server.accept()
        with conn, conn.makefile("rw") as f:
            f.write(json.dumps({"QMP": {"version": {}}}) + "\n")
            f.flush()
            for line in f:
                cmd = json.loads(line)
                self.commands.append(cmd["execute"])
                if cmd["execute"] == "qmp_capabilities":
                    f.write(json.dumps({"return": {}}) + "\n")
                    f.write(json.dumps({"event": "SHUTDOWN", "data": {"guest": True, "reason": self.reason}}) + "\n")
                elif cmd["execute"] == "human-monitor-command":
                    gpa = int(cmd["arguments"]["command-line"].split()[-1], 16)
                    f.write(json.dumps({"event": "STOP"}) + "\n")  # events may come between replies
                    f.write(json.dumps({"return": f"{gpa:016x}: 0x{self.memory.get(gpa, 0):016x}\r\n"}) + "\n")
                elif cmd["execute"] == "quit":
                    f.write(json.dumps({"return": {}}) + "\n")
                    f.flush()
                    return
                f.flush()


def _trace_dir(tmp_path: Path) -> Path:
    (tmp_path / "tracefs").mkdir()
    (tmp_path / "tracefs/trace").write_text(TRACE_22F7)
    return tmp_path / "tracefs"


def test_a_guest_reset_is_walked_then_qemu_quit(tmp_path: Path) -> None:
    qemu = FakeQemu(tmp_path / "w.sock", "guest-reset", _tables(0x1234161))
    qemu.start()
    lost: list[bool] = []
    watch = reset_watch.ResetWatch(tmp_path / "w.sock", _trace_dir(tmp_path), tmp_path / "walk.txt", lambda: lost.append(True))
    watch.start()
    watch.join(10)
    assert watch.reset.is_set() and not lost and not watch.error
    assert qemu.commands[0] == "qmp_capabilities" and qemu.commands[-1] == "quit"
    assert "the IDT's #DF gate 0xfffffe0000000080 mapped at 0x1234080" in watch.summary
    assert "cr2 0xfffffe0000000080 mapped at 0x1234080" in watch.summary
    assert "rip 0x52bc4f NOT PRESENT at the pgd" in watch.summary  # the user half is not in these tables
    record = (tmp_path / "walk.txt").read_text()
    assert record.startswith(f"state: {STATE_22F7}\n") and "pte 0x1234161" in record
    assert (tmp_path / "tracefs/trace").read_text() == TRACE_22F7  # left for shutdown_witness


def test_a_walk_with_the_nested_root_is_read_again_through_level_1s_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    guest = _tables(0x1234161)
    host = _nested_tables(PAGES | {0x97D000 & ~0xFFF: 0x100000}) | _host_copy(guest, PAGES)
    peeks: list[int] = []

    class FakePeek:
        def __init__(self, tracefs: Path) -> None:
            assert tracefs == tmp_path / "tracefs"

        def read_u64(self, physical: int) -> int:
            peeks.append(physical)
            return host.get(physical, 0)

        def close(self) -> None:
            peeks.append(-1)

    monkeypatch.setattr(reset_watch.kernel_peek, "KernelPeek", FakePeek)
    base = _trace_dir(tmp_path)
    (base / "trace").write_text(TRACE_22F7.replace("exitinfo1=0x0", f"exitinfo1=0x0 ncr3={NCR3:#x}"))
    qemu = FakeQemu(tmp_path / "w.sock", "guest-reset", guest)
    qemu.start()
    watch = reset_watch.ResetWatch(tmp_path / "w.sock", base, tmp_path / "walk.txt", lambda: None)
    watch.start()
    watch.join(10)
    assert "; level 1's nested tables: " in watch.summary and peeks[-1] == -1
    # The IDT's words agree; the user half (rip, rsp) is not in these guest tables, its PGD entry 0 reads 0 both ways.
    assert "differ" not in watch.summary, watch.summary
    assert "nested 0x97dfe0: nested mapped at 0x100fe0 holds 0x2067, the same" in (tmp_path / "walk.txt").read_text()


def test_a_power_off_or_a_signal_is_only_quit(tmp_path: Path) -> None:
    qemu = FakeQemu(tmp_path / "w.sock", "host-signal", {})
    qemu.start()
    watch = reset_watch.ResetWatch(tmp_path / "w.sock", _trace_dir(tmp_path), tmp_path / "walk.txt", lambda: None)
    watch.start()
    watch.join(10)
    assert qemu.commands == ["qmp_capabilities", "quit"]
    assert not watch.reset.is_set() and watch.summary == "" and not (tmp_path / "walk.txt").exists()


def test_a_watch_that_cannot_reach_qemu_ends_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A guest paused at a shutdown with nobody to quit it would stay in KVM and look alive."""
    monkeypatch.setattr(reset_watch, "CONNECT_S", 0.3)
    lost: list[bool] = []
    watch = reset_watch.ResetWatch(tmp_path / "none.sock", None, tmp_path / "walk.txt", lambda: lost.append(True))
    watch.start()
    watch.join(10)
    assert lost == [True] and "reset watch" in watch.error


FAKE_QEMU = r'''#!/usr/bin/env python3
"""Stands in for a level-2 QEMU whose guest triple-faults: KVM's probe line
in the trace, a SHUTDOWN event on the reset-watch socket, `xp` answered
from MEMORY, exit 0 at `quit`, as QEMU run with -action shutdown=pause."""
import json, socket, sys
args = sys.argv[1:]
assert args[args.index("-action") + 1] == "shutdown=pause"
qmps = [args[i + 1] for i, a in enumerate(args) if a == "-qmp"]
path = qmps[-1].split(",")[0].removeprefix("unix:")
MEMORY = {memory!r}
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(1)
print("LAB-STRESS load start", flush=True)
with open({trace!r}, "a") as t:
    t.write({trace_text!r})
conn, _ = server.accept()
f = conn.makefile("rw")
def send(msg):
    f.write(json.dumps(msg) + "\n"); f.flush()
send({{"QMP": {{}}}})
for line in f:
    cmd = json.loads(line)
    if cmd["execute"] == "qmp_capabilities":
        send({{"return": {{}}}})
        send({{"event": "SHUTDOWN", "data": {{"guest": True, "reason": "guest-reset"}}}})
    elif cmd["execute"] == "human-monitor-command":
        gpa = int(cmd["arguments"]["command-line"].split()[-1], 16)
        send({{"return": "%016x: 0x%016x\r\n" % (gpa, MEMORY.get(gpa, 0))}})
    elif cmd["execute"] == "quit":
        send({{"return": {{}}}})
        sys.exit(0)
'''


def test_a_stress_guest_that_triple_faults_carries_its_page_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.invm import level2, marks
    from lab.runner import Runner

    monkeypatch.setattr(marks, "KMSG", tmp_path / "kmsg")
    base = tmp_path / "tracefs"
    base.mkdir()
    (base / "trace").write_text("")
    qemu = tmp_path / "qemu"
    qemu.write_text(FAKE_QEMU.format(memory=_tables(0x1234161), trace=str(base / "trace"), trace_text=TRACE_22F7))
    qemu.chmod(0o755)
    cfg = {"qemu": str(qemu), "guest_cpus": 2, "guest_mem_mb": 256, "guest_kernel": str(tmp_path / "bzImage"),
           "guest_initramfs": str(tmp_path / "initramfs")}  # fmt: skip
    guest = level2.Guest(Runner(tmp_path / "logs"), cfg, tmp_path, "walk-test", "lab.mode=load", reset_trace=base)
    assert guest.wait_for("LAB-STRESS load start", 10)
    assert guest.proc.wait(20) == 0  # the watch quit it, as -no-reboot alone would have ended it
    assert guest.was_reset()
    walk = guest.reset_walk()
    assert walk.startswith("; its page walk: cr2 0xfffffe0000000080 mapped at 0x1234080")
    assert "the IDT's gate 236 0xfffffe0000000ec0 mapped at 0x1234ec0" in walk
    assert (tmp_path / "level2-walk-walk-test.txt").exists()


def test_a_guest_without_a_trace_is_not_paused_at_shutdown(tmp_path: Path) -> None:
    from lab.invm import level2

    cfg = {"qemu": "qemu", "guest_cpus": 2, "guest_mem_mb": 256, "guest_kernel": "k", "guest_initramfs": "i"}
    assert "-action" not in level2.qemu_command(cfg, "kvm")
    cmd = level2.qemu_command(cfg, "kvm", reset_watch_socket=tmp_path / "w.sock")
    assert cmd[cmd.index("-action") + 1] == "shutdown=pause" and "-no-reboot" in cmd
    assert cmd[-1] == f"unix:{tmp_path / 'w.sock'},server=on,wait=off"


def test_a_boot_that_triple_faults_carries_its_page_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """boot_guest with walk_resets, as the emulator control's guests run."""
    from test_shutdown_trace import fake_tracefs

    from lab.invm import level2, marks, shutdown_trace
    from lab.runner import Runner

    monkeypatch.setattr(marks, "KMSG", tmp_path / "kmsg")
    base = fake_tracefs(tmp_path / "tracefs")
    monkeypatch.setattr(shutdown_trace, "TRACEFS_DIRS", (base,))
    qemu = tmp_path / "qemu"
    qemu.write_text(FAKE_QEMU.format(memory=_tables(0x1234161), trace=str(base / "trace"), trace_text=TRACE_22F7))
    qemu.chmod(0o755)
    cfg = {"qemu": str(qemu), "guest_cpus": 2, "guest_mem_mb": 256, "guest_kernel": str(tmp_path / "bzImage"),
           "guest_initramfs": str(tmp_path / "initramfs"), "kvm_timeout": 30, "tcg_timeout": 30,
           "trace_shutdowns": True}  # fmt: skip
    probe, _ = level2.boot_guest(Runner(tmp_path / "logs"), cfg, "kvm", tmp_path, label="control-0", walk_resets=True)
    assert not probe.ok
    assert "qemu exit status 0; KVM saw a shutdown exit (triple fault): vCPU 1 shutdown at 0x52bc4f" in probe.reason
    assert "; its page walk: cr2 0xfffffe0000000080 mapped at 0x1234080" in probe.reason
    assert (tmp_path / "level2-walk-control-0.txt").exists()


NCR3 = 0x7000  # level 1's nested root in the tests below
PTE_TABLES = 0x7_0000_0000  # where the fake nested tables keep their last level


def _nested_tables(pages: dict[int, int]) -> dict[int, int]:
    """Level 1's nested tables mapping each guest page of `pages` (guest page -> level-1 page), 4 KiB pages."""
    memory = {NCR3 + 8 * 0: 0x8000 | 0x7}
    for guest_page, host_page in pages.items():
        pmd_table = 0x9000 + 0x1000 * (guest_page >> 30 & 0x1FF)
        pte_table = PTE_TABLES + 0x1000 * (guest_page >> 21 & 0x3FFF)
        memory[0x8000 + 8 * (guest_page >> 30 & 0x1FF)] = pmd_table | 0x7
        memory[pmd_table + 8 * (guest_page >> 21 & 0x1FF)] = pte_table | 0x7
        memory[pte_table + 8 * (guest_page >> 12 & 0x1FF)] = host_page | 0x7
    return memory


def _host_copy(guest: dict[int, int], pages: dict[int, int]) -> dict[int, int]:
    """Level 1's memory holding each guest page at the level-1 page `pages` names."""
    return {pages[gpa & ~0xFFF] | (gpa & 0xFFF): value for gpa, value in guest.items() if gpa & ~0xFFF in pages}


PAGES = {CR3: 0x100000, 0x2000: 0x101000, 0x3000: 0x102000, 0x4000: 0x103000, 0x1234000: 0x104000}


def test_nested_tables_that_map_the_guests_pages_read_the_same() -> None:
    guest = _tables(0x1234161) | {0x1234080: 0x8E00_0010_1000}
    host = _nested_tables(PAGES) | _host_copy(guest, PAGES)
    found = [page_walk.walk(_reader(guest), CR3, IDT_VA + 0x80, "gate 8")]
    reads = page_walk.nested_reads(_reader(guest), _reader(host), NCR3, found)
    assert [r.gpa for r in reads] == [CR3 + 8 * 508, 0x2000, 0x3000, 0x4000, 0x1234080]
    assert all(r.agrees() for r in reads)
    assert page_walk.nested_summary(reads) == "level 1's nested tables: all 5 words the same through them"


def test_a_stale_nested_mapping_is_named_with_what_the_cpu_read() -> None:
    """The shape that would put idt-unreadable on level 1: its nested tables give
    the CPU another page than the one QEMU's memory of the guest holds."""
    guest = _tables(0x1234161) | {0x1234080: 0x8E00_0010_1000}
    host = _nested_tables(PAGES | {CR3: 0x200000}) | _host_copy(guest, PAGES)  # the PGD's page: an old copy, zeroed
    found = [page_walk.walk(_reader(guest), CR3, IDT_VA + 0x80, "gate 8")]
    reads = page_walk.nested_reads(_reader(guest), _reader(host), NCR3, found)
    said = page_walk.nested_summary(reads)
    assert said.startswith("level 1's nested tables: 1 of 5 words differ: ")
    assert "0x97dfe0: nested mapped at 0x200fe0 holds 0x0, NOT the guest's 0x2067" in said
    del host[PTE_TABLES + 8 * (0x4000 >> 12)]  # the PTE page's nested mapping gone
    unmapped = page_walk.nested_summary(page_walk.nested_reads(_reader(guest), _reader(host), NCR3, found))
    assert "0x4000: the nested tables NOT PRESENT at the pte" in unmapped


def test_level_1s_nested_tables_are_walked_once_a_page() -> None:
    """Each read of level 1's memory costs a kprobe's round trip (0.3 s under TCG)."""
    guest = _tables(0x1234161) | {0x1234080: 0x8E00_0010_1000, 0x12340E0: 0x8E00_0010_2000}
    host = _nested_tables(PAGES) | _host_copy(guest, PAGES)
    reads: list[int] = []

    def read_host(physical: int) -> int:
        reads.append(physical)
        return host.get(physical, 0)

    gates = [page_walk.walk(_reader(guest), CR3, IDT_VA + 16 * n, f"gate {n}") for n in (8, 14)]
    found = page_walk.nested_reads(_reader(guest), read_host, NCR3, gates)
    assert len(found) == 6 and all(r.agrees() for r in found)  # 4 table entries, 2 gates
    assert len(reads) == 5 * 4 + 6  # 5 pages walked through 4 levels, then each word read


def test_a_nested_entry_with_address_bits_the_cpu_lacks_maps_nothing() -> None:
    """Stress run 35e4: the nested walk of 0x108f69000 (past the guest's RAM) found KVM's MMIO entry,
    an address with bit 47 set on a CPU of 40 physical bits, and called it "mapped at 0x8000108f69000"."""
    host = _nested_tables({0x108F69000 & ~0xFFF: 0x8000_0000_0000 | 0x108F69000})
    said = page_walk.walk(_reader(host), NCR3, 0x108F69000, "cr3", phys_bits=40)
    assert said.gpa is None and said.outcome() == "RESERVED bits at the pte"
    assert page_walk.walk(_reader(host), NCR3, 0x108F69000, "cr3").gpa == 0x8000_0000_0000 | 0x108F69000  # 52 bits: an address
    assert page_walk.physical_bits("model name\t: QEMU\naddress sizes\t: 40 bits physical, 48 bits virtual\n") == 40
    assert page_walk.physical_bits("") == 52
