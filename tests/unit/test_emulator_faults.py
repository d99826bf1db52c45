from __future__ import annotations

import re
from pathlib import Path

import pytest
from oops_samples import GUEST_WITH_HOST_GS_OOPS, NMI_LEFT_AFTER_BH_WARNING, NULL_CS_FRAME_OOPS, NULL_PERCPU_OOPS, SYSTEM_MAP

from lab import emulator_faults, exit_record, landmarks
from lab.errors import LabError
from lab.exit_record import VcpuExits


def _symbols(tmp_path: Path, text: str = SYSTEM_MAP) -> dict[str, int]:
    (tmp_path / "System.map").write_text(text)
    return emulator_faults.read_symbols(tmp_path / "System.map")


def test_null_percpu_needs_a_load_of_current_task_and_a_zero_result(tmp_path: Path) -> None:
    symbols = _symbols(tmp_path)
    line, code = emulator_faults.null_percpu_oops(NULL_PERCPU_OOPS, symbols)
    assert line == 4 and "65 48 8b 05 c4 ed af 7e <48> 8b 80" in code
    assert emulator_faults.null_percpu_oops(NULL_PERCPU_OOPS.replace("RAX: 0000000000000000", "RAX: 0000000000000001"), symbols)[0] == 0
    # A NULL dereference not through %gs is an ordinary kernel bug.
    assert emulator_faults.null_percpu_oops(NULL_PERCPU_OOPS.replace("65 48 8b 05", "90 48 8b 05"), symbols)[0] == 0


def test_a_null_read_of_another_per_cpu_variable_is_ours(tmp_path: Path) -> None:
    # The same bytes with the displacement of cpu_tlbstate (0x140 further): a NULL per-CPU pointer of some code's own.
    other = NULL_PERCPU_OOPS.replace("c4 ed af 7e", "04 ef af 7e")
    assert emulator_faults.null_percpu_oops(other, _symbols(tmp_path))[0] == 0
    # Without the kernel's System.map nothing proves which variable was read.
    assert emulator_faults.null_percpu_oops(NULL_PERCPU_OOPS, {})[0] == 0
    # Nor when the oops is in a function the map does not know.
    assert emulator_faults.null_percpu_oops(NULL_PERCPU_OOPS.replace("exc_page_fault+", "pvsched_apply+"), _symbols(tmp_path))[0] == 0


def test_unkillable_vcpu_needs_the_thread_running(tmp_path: Path) -> None:
    running = (
        "LAB-WEDGED level2 boot (kvm) (pid 83, state R, wchan 0) 170 s past its timeout: it survives SIGKILL; a level-1 CPU is stuck\n"
    )
    (tmp_path / "level1-console.log").write_text(running)
    assert [e.signature for e in emulator_faults.find(tmp_path, "tcg", {})] == ["unkillable-vcpu"]
    assert emulator_faults.find(tmp_path, "kvm", {}) == []  # only the emulated CPU is suspected
    # Asleep in the kernel (our teardown, an srcu wait) is a kernel bug, not a CPU stuck in a guest.
    (tmp_path / "level1-console.log").write_text(running.replace("state R, wchan 0", "state D, wchan __synchronize_srcu"))
    assert emulator_faults.find(tmp_path, "tcg", {}) == []


def test_lost_wakeup_comes_from_a_dump_that_saw_it_twice(tmp_path: Path) -> None:
    (tmp_path / "level1-cpus.txt").write_text("CPUs [1] were halted with interrupts pending, but not 1.5 s later: no lost wakeup\n")
    assert emulator_faults.find(tmp_path, "tcg", {}) == []
    (tmp_path / "level1-cpus.txt").write_text(
        "halted with a pending, deliverable interrupt (QEMU did not wake them, in two snapshots 1.5 s apart): CPUs [1]\n"
    )
    found = emulator_faults.find(tmp_path, "tcg", {})
    assert [(e.signature, e.line_no) for e in found] == [("lost-wakeup", emulator_faults.AT_END)]


def test_a_stuck_wait_alone_is_no_evidence(tmp_path: Path) -> None:
    wedged = (
        "LAB-WEDGED level2 boot (x) (pid 77, gone) 179 s past its timeout: the lab's wait for it never returned; a level-1 CPU is stuck\n"
    )
    (tmp_path / "level1-console.log").write_text(wedged)
    assert emulator_faults.find(tmp_path, "tcg", {}) == []


def test_null_cs_frame_is_told_from_an_ordinary_oops(tmp_path: Path) -> None:
    assert emulator_faults.null_cs_frame(NULL_CS_FRAME_OOPS) == (5, "RIP: 0000:0xebea")
    assert emulator_faults.null_cs_frame(NULL_PERCPU_OOPS) == (0, "")  # CS 0010
    (tmp_path / "level2-console-kvm.log").write_text(NULL_CS_FRAME_OOPS)
    found = emulator_faults.find(tmp_path, "tcg", {})
    assert [(e.signature, e.source, e.line_no) for e in found] == [("null-cs-frame", "level2-console-kvm.log", 5)]


def test_nmi_never_left_needs_the_nmi_bits_of_the_preempt_count() -> None:
    # Run 20261127T135930Z: NMI (0x100000) + hardirq (0x10000) in task context.
    report = "[   80.500395] BUG: scheduling while atomic: qemu-system-x86/76/0x00110000\n[   80.500678] Modules linked in:\n"
    assert emulator_faults.nmi_never_left(report) == (1, "BUG: scheduling while atomic: qemu-system-x86/76/0x00110000")
    # A spinlock held across schedule() is a kernel bug, whatever the CPU.
    assert emulator_faults.nmi_never_left(report.replace("0x00110000", "0x00000002")) == (0, "")
    assert emulator_faults.nmi_never_left(report.replace("0x00110000", "0x00010001")) == (0, "")


def test_nmi_never_left_is_placed_at_the_same_tasks_hardirq_warning_before_it() -> None:
    # The warning (line 5, its "cut here" at 4) was the unmodified tree's first splat: a sign
    # found only at the schedule (line 48) came after it and excused nothing.
    sched = "BUG: scheduling while atomic: CPU 0/KVM/134/0x00110001"
    assert emulator_faults.nmi_never_left(NMI_LEFT_AFTER_BH_WARNING) == (4, sched)
    # Another task's warning says nothing of this task's count.
    other_task = NMI_LEFT_AFTER_BH_WARNING.replace("PID: 134 at kernel/softirq.c", "PID: 99 at kernel/softirq.c")
    assert emulator_faults.nmi_never_left(other_task) == (48, sched)
    # Another report between them: the warning may be of something else.
    lines = NMI_LEFT_AFTER_BH_WARNING.splitlines()
    between = "\n".join([*lines[:20], "[  105.9550] BUG: unable to handle page fault for address: 0000000000000008", *lines[20:]])
    assert emulator_faults.nmi_never_left(between) == (49, sched)
    # A warning elsewhere than the in_hardirq() check: not the raised count.
    elsewhere = NMI_LEFT_AFTER_BH_WARNING.replace("at kernel/softirq.c:387 __local_bh_enable_ip+0x16/0x5a", "at mm/slub.c:1 kfree+0x1/0x2")
    assert emulator_faults.nmi_never_left(elsewhere) == (48, sched)


def test_guest_with_host_gs_needs_level_1s_own_gs_base_plus_current_task() -> None:
    level1_gs = emulator_faults.gs_bases(NMI_LEFT_AFTER_BH_WARNING)
    assert level1_gs == {0xFFFF88813CD00000}
    line, what = emulator_faults.guest_with_host_gs(GUEST_WITH_HOST_GS_OOPS, level1_gs, {"pcpu_hot": 0x2AEC0})
    assert line == 1 and "ffff88813cd00000" in what
    # No base of level 1's known, another base, or current elsewhere: nothing proven.
    assert emulator_faults.guest_with_host_gs(GUEST_WITH_HOST_GS_OOPS, set(), {"pcpu_hot": 0x2AEC0}) == (0, "")
    assert emulator_faults.guest_with_host_gs(GUEST_WITH_HOST_GS_OOPS, {0xFFFF88813CC00000}, {"pcpu_hot": 0x2AEC0}) == (0, "")
    assert emulator_faults.guest_with_host_gs(GUEST_WITH_HOST_GS_OOPS, level1_gs, {"pcpu_hot": 0x2AC00}) == (0, "")
    # The guest's own GS base is no sign: a fault through it is the guest's own business.
    own = GUEST_WITH_HOST_GS_OOPS.replace("GS:ffff88800f700000", "GS:ffff88813cd00000")
    assert emulator_faults.guest_with_host_gs(own, level1_gs, {"pcpu_hot": 0x2AEC0}) == (0, "")


def test_the_unmodified_trees_kexec_loss_shows_both_signs_before_its_splats(tmp_path: Path) -> None:
    (tmp_path / "level1-dmesg.txt").write_text(NMI_LEFT_AFTER_BH_WARNING)
    (tmp_path / "level2-console-kexec.log").write_text(GUEST_WITH_HOST_GS_OOPS)
    found = emulator_faults.find(tmp_path, "tcg", {"pcpu_hot": 0x2AEC0})
    assert [(e.signature, e.source, e.line_no) for e in found] == [
        ("nmi-never-left", "level1-dmesg.txt", 4),
        ("guest-with-host-gs", "level2-console-kexec.log", 1),
    ]


# Run 20261127T143457Z, attempt 1: level 1's CPU 0 in the level-2 guest's user code for minutes.
STALL = "[  276.054864] rcu: \t0-...0: (4696 ticks this GP) idle=05ec/1/0x4000000000000000 softirq=15798/15799 fqs=1048\n"
LAPIC = """
# info lapic {cpu}
dumping local APIC state for CPU {cpu}

LVTT\t 0x000000ec active-hi edge                 one-shot     Fixed  (vec 236)
ISR\t {isr}
IRR\t {irr}

APR 0x00 TPR 0x10 DFR 0x0f LDR 0x00 PPR 0x10
"""
REGS = """
CPU#0
RAX=000000000042d670 RBX=0000000000000000 RCX=0000000000000002 RDX=0000000005fdf710
RIP=000000000042ebf0 RFL=00000206 [-----P-] CPL=3 II=0 A20=1 SMM=0 HLT=0
CPU#1
RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000000000
RIP=ffffffff814f5aec RFL=00000097 [--S-APC] CPL=0 II=0 A20=1 SMM=0 HLT=0
"""


def _dump(regs: str = REGS, irr0: str = "236 253 ", isr0: str = "(none)") -> str:
    return regs + LAPIC.format(cpu=0, irr=irr0, isr=isr0) + LAPIC.format(cpu=1, irr="236 ", isr="(none)")


DUMP = _dump()


def test_stuck_in_guest_needs_a_stalled_cpu_at_cpl3_not_taking_a_deliverable_interrupt(tmp_path: Path) -> None:
    assert emulator_faults.stuck_in_guest(STALL, DUMP) == [0]
    assert emulator_faults.stuck_in_guest(STALL.replace("\t0-", "\t1-"), DUMP) == []  # CPU 1 is in the kernel, IF clear
    assert emulator_faults.stuck_in_guest("", DUMP) == []  # user code without a stall is normal
    # User code with nothing requested, or with an interrupt in service, or masked: a stall of another cause.
    assert emulator_faults.stuck_in_guest(STALL, _dump(irr0="(none)")) == []
    assert emulator_faults.stuck_in_guest(STALL, _dump(isr0="236 ")) == []
    assert emulator_faults.stuck_in_guest(STALL, _dump(regs=REGS.replace("RFL=00000206", "RFL=00000006"))) == []
    assert emulator_faults.stuck_in_guest(STALL, _dump(irr0="16 ")) == []  # below the processor priority
    assert emulator_faults.stuck_in_guest(STALL, REGS) == []  # no APIC state: no evidence
    (tmp_path / "level1-console.log").write_text(STALL)
    (tmp_path / "level1-cpus-wedged.txt").write_text(DUMP)
    assert [e.signature for e in emulator_faults.find(tmp_path, "tcg", {})] == ["stuck-in-guest"]


def test_stuck_in_guest_in_a_kept_dump() -> None:
    """Run 20261203T124140Z-25db: level-1 CPU 0 at CPL 3 for minutes, timer and IPIs requested."""
    from oops_samples import STUCK_IN_GUEST_DUMP, STUCK_IN_GUEST_STALL

    assert emulator_faults.stuck_in_guest(STUCK_IN_GUEST_STALL, STUCK_IN_GUEST_DUMP) == [0]


def test_null_percpu_on_the_labs_own_kernel_build(tmp_path: Path) -> None:
    from oops_samples import NULL_PERCPU_OOPS_LAB_BUILD, SYSTEM_MAP_LAB_BUILD

    symbols = _symbols(tmp_path, SYSTEM_MAP_LAB_BUILD)
    assert emulator_faults.null_percpu_oops(NULL_PERCPU_OOPS_LAB_BUILD, symbols)[0] == 4
    # The older build's bytes do not resolve to pcpu_hot in this kernel: no sign.
    assert emulator_faults.null_percpu_oops(NULL_PERCPU_OOPS, symbols)[0] == 0


def test_wild_return_from_halt_needs_the_idle_task_its_halt_and_a_raw_address() -> None:
    from oops_samples import WILD_RETURN_FROM_HALT_OOPS as oops

    line, rip = emulator_faults.wild_return_from_halt(oops)
    assert rip == "0xffff8c8b919a899a" and "RIP: 0010:0xffff8c8b919a899a" in oops.splitlines()[line - 1]
    # Not the idle task: some task's code jumped there (a corrupted pointer of ours, say).
    assert emulator_faults.wild_return_from_halt(oops.replace("Comm: swapper/0", "Comm: qemu-system-x86")) == (0, "")
    # A trace that does not start at the idle HLT: a call through a bad pointer.
    called = oops.replace("? pv_native_safe_halt+0x17/0x18", "? kvm_pvsched_event+0x40/0x90")
    assert emulator_faults.wild_return_from_halt(called) == (0, "")
    # A symbolized RIP is an ordinary oops in known code.
    assert emulator_faults.wild_return_from_halt(oops.replace("RIP: 0010:0xffff8c8b919a899a", "RIP: 0010:do_idle+0x10/0x13e")) == (0, "")
    from oops_samples import WILD_RETURN_FROM_HALT_LOW_OOPS as low

    assert emulator_faults.wild_return_from_halt(low)[1] == "0x1e0"
    # A data access, not an instruction fetch.
    assert emulator_faults.wild_return_from_halt(oops.replace("supervisor instruction fetch", "supervisor read access")) == (0, "")


def test_guest_null_current_needs_the_page_fault_handlers_registers() -> None:
    from oops_samples import GUEST_NULL_CURRENT_BASE_OOPS as base
    from oops_samples import GUEST_NULL_CURRENT_OOPS as ours

    assert emulator_faults.guest_null_current(ours) == (1, "BUG: IRQ stack guard page was hit")
    assert emulator_faults.guest_null_current(base) == (1, "Corrupted page table at address 568")
    # current was not NULL: a stack overflow of some other making.
    assert emulator_faults.guest_null_current(ours.replace("RAX: 0000000000000000", "RAX: ffff888003a10000")) == (0, "")
    # The fault was not at a NULL-page offset.
    assert emulator_faults.guest_null_current(ours.replace("R12: 0000000000000568", "R12: ffff888003a10568")) == (0, "")
    # The stack ran out somewhere other than the page-fault entry: a recursion in some code.
    elsewhere = ours.replace("RIP: 0010:asm_exc_page_fault+0x8/0x30", "RIP: 0010:pvsched_walk+0x8/0x30")
    assert emulator_faults.guest_null_current(elsewhere) == (0, "")
    # A bad-pagetable fault elsewhere than the offset read from current.
    assert emulator_faults.guest_null_current(base.replace("at address 568", "at address 7f00")) == (0, "")
    # An ordinary NULL dereference at that offset is no sign.
    plain = ours.replace("BUG: IRQ stack guard page was hit", "BUG: kernel NULL pointer dereference")
    assert emulator_faults.guest_null_current(plain) == (0, "")


def test_guest_null_current_is_found_in_a_boot_whose_console_was_never_kept(tmp_path: Path) -> None:
    from oops_samples import GUEST_NULL_CURRENT_BASE_OOPS as base

    (tmp_path / "logs-level1").mkdir()
    (tmp_path / "logs-level1" / "001-level2-boot-control-0.log").write_text("# level2 boot (control-0)\n\n" + base)
    found = emulator_faults.find(tmp_path, "tcg", {})
    assert [(e.signature, e.source, e.line_no) for e in found] == [("guest-null-current", "logs-level1/001-level2-boot-control-0.log", 3)]
    # Kept as a console too: counted once, from the console.
    (tmp_path / "level2-console-control-0.log").write_text(base)
    found = emulator_faults.find(tmp_path, "tcg", {})
    assert [(e.signature, e.source) for e in found] == [("guest-null-current", "level2-console-control-0.log")]


def test_every_sign_found_is_named_in_the_registry_and_the_docstring() -> None:
    import re

    source = Path(emulator_faults.__file__).read_text()
    reported = set(re.findall(r'Evidence\("([a-z-]+)"', source))
    assert reported == set(emulator_faults.SIGNATURES)
    assert all(f"- `{name}`" in (emulator_faults.__doc__ or "") for name in emulator_faults.SIGNATURES)
    assert set(emulator_faults.SIGNATURES) >= emulator_faults.ATTRIBUTABLE


# Run 20261203T164142Z-b103's hotplug guest (debug profile): level 1's exit sample as it fell silent.
B103_VMRUN_RETURN = 0xFFFFFFFF81E8D210  # __svm_vcpu_run+0xa0, the instruction after VMRUN in that kernel
B103_SAMPLE = [
    VcpuExits(0, 2302, [("npf", B103_VMRUN_RETURN, 2302)]),
    VcpuExits(1, 699, [("msr", 0xFFFFFFFF810A4C30, 280), ("hlt", 0xFFFFFFFF81F1E2A4, 260), ("npf", 0xFFFFFFFF81E8D210, 9)]),
]


def _keep_sample(tmp_path: Path, guest: str, vcpus: list[VcpuExits]) -> None:
    exit_record.write_record(tmp_path / exit_record.record_name(guest), {v.vcpu: v for v in vcpus}, 2.02)


def test_a_guest_looping_at_level_ones_vmrun_return_is_a_sign(tmp_path: Path) -> None:
    _keep_sample(tmp_path, "stress-hotplug", B103_SAMPLE)
    marks = {landmarks.VMRUN_RETURN: B103_VMRUN_RETURN}
    found = emulator_faults.find(tmp_path, "tcg", {}, marks)
    assert [(e.signature, e.source, e.line_no) for e in found] == [
        ("guest-at-vmrun-return", "level2-exits-stress-hotplug.json", emulator_faults.AT_END)
    ]
    assert "vCPU 0: 2302 of 2302 exits npf at 0xffffffff81e8d210" in found[0].detail
    assert emulator_faults.find(tmp_path, "kvm", {}, marks) == []  # only the emulated CPU is suspected
    # Without the kernel's landmark nothing proves where that RIP is.
    assert emulator_faults.find(tmp_path, "tcg", {}) == []


def test_a_guest_merely_passing_that_address_or_looping_elsewhere_is_no_sign(tmp_path: Path) -> None:
    marks = {landmarks.VMRUN_RETURN: B103_VMRUN_RETURN}
    # Looping elsewhere (a guest of ours stuck at its own code) is ours to explain.
    _keep_sample(tmp_path, "a", [VcpuExits(0, 2302, [("npf", B103_VMRUN_RETURN + 0x10, 2302)])])
    # At that address, but not a loop: a share of the exits, or too few to tell.
    _keep_sample(tmp_path, "b", [VcpuExits(0, 1000, [("npf", B103_VMRUN_RETURN, 800), ("hlt", 0xFFFFFFFF81F1E2A4, 200)])])
    _keep_sample(tmp_path, "c", [VcpuExits(0, emulator_faults.LOOP_MIN_EXITS - 1, [("npf", B103_VMRUN_RETURN, 49)])])
    # Another exit at that RIP is not the nested page-fault loop seen.
    _keep_sample(tmp_path, "d", [VcpuExits(0, 2302, [("msr", B103_VMRUN_RETURN, 2302)])])
    assert emulator_faults.find(tmp_path, "tcg", {}, marks) == []


def test_a_sample_that_is_not_one_is_an_error(tmp_path: Path) -> None:
    (tmp_path / exit_record.record_name("x")).write_text('{"seconds": 2.0}\n')
    with pytest.raises(LabError, match="is not an exit sample"):
        emulator_faults.find(tmp_path, "tcg", {}, {landmarks.VMRUN_RETURN: B103_VMRUN_RETURN})


def test_a_splat_stamped_back_in_time_is_clock_from_guest(tmp_path: Path) -> None:
    from oops_samples import CLOCK_FROM_GUEST_DMESG as dmesg

    line, what = emulator_faults.clock_from_guest(dmesg)
    assert line == 5 and "BUG: TASK stack guard page was hit" in what and "542.2 s" in what
    (tmp_path / "level1-dmesg.txt").write_text(dmesg)
    found = [e for e in emulator_faults.find(tmp_path, "tcg", {}) if e.signature == "clock-from-guest"]
    assert [(e.source, e.line_no) for e in found] == [("level1-dmesg.txt", 5)]
    # The same oops stamped in its place is no sign; nor a splat a second or two
    # out of order (CPUs' stamps), nor a line that is no splat stamped back.
    assert emulator_faults.clock_from_guest(dmesg.replace("[   17.1", "[  545.1")) == (0, "")
    assert emulator_faults.clock_from_guest(dmesg.replace("[   17.1", "[  540.1")) == (0, "")
    quiet = "".join(ln + "\n" for ln in dmesg.splitlines() if "17.10898" not in ln and "17.11" not in ln)
    assert emulator_faults.clock_from_guest(quiet + "[    3.0] virtio_blk virtio1: [vda] 1 512-byte logical blocks\n") == (0, "")
    # Seen on the unpatched kernel since 2026-12-04 (the control's base-girq cell): it may excuse.
    assert "clock-from-guest" in emulator_faults.ATTRIBUTABLE


def test_stuck_in_guest_reported_by_the_cpu_waiting_for_its_ipi(tmp_path: Path) -> None:
    from oops_samples import SOFT_LOCKUP_IPI_WAIT, STUCK_IN_GUEST_IPI_DUMP

    # base-spin run 3: CPU 1 soft-locked in smp_call_function_many_cond(), CPU 0 at CPL 3 with 251 pending.
    assert emulator_faults.stuck_in_guest(SOFT_LOCKUP_IPI_WAIT, STUCK_IN_GUEST_IPI_DUMP) == [0]
    # A soft lockup elsewhere says nothing of CPU 0; nor does CPU 0 without the call-function IPI requested.
    elsewhere = SOFT_LOCKUP_IPI_WAIT.replace("RIP: 0010:smp_call_function_many_cond", "RIP: 0010:pvsched_apply")
    assert emulator_faults.stuck_in_guest(elsewhere, STUCK_IN_GUEST_IPI_DUMP) == []
    assert emulator_faults.stuck_in_guest(SOFT_LOCKUP_IPI_WAIT, STUCK_IN_GUEST_IPI_DUMP.replace("IRR\t 236 251 253", "IRR\t 236 253")) == []
    # Nor a CPU that takes it (in the kernel, CPL 0).
    at_cpl0 = STUCK_IN_GUEST_IPI_DUMP.replace("RFL=00000246 [---Z-P-] CPL=3", "RFL=00000246 [---Z-P-] CPL=0")
    assert emulator_faults.stuck_in_guest(SOFT_LOCKUP_IPI_WAIT, at_cpl0) == []
    (tmp_path / "level1-console.log").write_text(SOFT_LOCKUP_IPI_WAIT)
    (tmp_path / "level1-cpus.txt").write_text(STUCK_IN_GUEST_IPI_DUMP)
    assert [e.signature for e in emulator_faults.find(tmp_path, "tcg", {})] == ["stuck-in-guest"]


def test_an_interrupt_entered_again_with_if_clear_is_a_sign(tmp_path: Path) -> None:
    from oops_samples import IRQ_WITH_IF_CLEAR_OOPS, NMI_AT_IRQ_ENTRY

    line, frame = emulator_faults.irq_with_if_clear(IRQ_WITH_IF_CLEAR_OOPS)
    assert line == 1 and frame == "asm_sysvec_apic_timer_interrupt+0x0 entered again with IF clear (EFLAGS 00000006)"
    # IF set in the frame, an NMI's report, or no interrupt entry above it: not this.
    assert emulator_faults.irq_with_if_clear(IRQ_WITH_IF_CLEAR_OOPS.replace("EFLAGS: 00000006", "EFLAGS: 00000206")) == (0, "")
    in_nmi = IRQ_WITH_IF_CLEAR_OOPS.replace("[   10.128255] CPU: 1", "[   10.128200] NMI backtrace for cpu 1\n[   10.128255] CPU: 1")
    assert emulator_faults.irq_with_if_clear(in_nmi) == (0, "")
    assert emulator_faults.irq_with_if_clear(NMI_AT_IRQ_ENTRY) == (0, "")
    alone = IRQ_WITH_IF_CLEAR_OOPS.replace("asm_sysvec_apic_timer_interrupt+0x1a/0x20", "handle_mm_fault+0x1a/0x20")
    assert emulator_faults.irq_with_if_clear(alone) == (0, "")
    # Found in a guest's console by find(); it may not excuse until the unpatched kernel shows it.
    (tmp_path / "level1-console.log").write_text("")
    (tmp_path / "level2-console-stress-hostile-policy-1.log").write_text(IRQ_WITH_IF_CLEAR_OOPS)
    assert [(e.signature, e.line_no) for e in emulator_faults.find(tmp_path, "tcg", {})] == [("irq-with-if-clear", 1)]
    assert "irq-with-if-clear" not in emulator_faults.ATTRIBUTABLE


# Stress run 20261205T062501Z-22f7: a hostile guest's user-mode triple fault, with its state from the VMCB.
IDT_TRIPLE_FAULT = (
    "stress hostile: lost round: hostile round 3: no KVM snapshot after the measurement (the guest was gone, its QEMU "
    "exited with status 0; KVM saw a shutdown exit (triple fault): vCPU 1 shutdown at 0x52bc4f (?), its state "
    "rip=0x52bc4f rsp=0x7ffe55769090 cr2=0xfffffe0000000080 cr3=0x97d000 cpl=3 idt=0xfffffe0000000000 "
    "tr=0xfffffe000003e000 exitintinfo=0x800000ec exitinfo1=0x0) (console "
    "/out/vm/level2-console-stress-hostile-hostile-3.log); measured again\n"
)


def test_a_triple_fault_reading_the_idt_is_a_sign(tmp_path: Path) -> None:
    (tmp_path / "level2-console-stress-hostile-hostile-3.log").write_text("LAB-GUEST-READY 2.1\nLAB-STRESS load start\n")
    found = emulator_faults.idt_unreadable(tmp_path, IDT_TRIPLE_FAULT)
    assert [(e.signature, e.source, e.line_no) for e in found] == [("idt-unreadable", "level2-console-stress-hostile-hostile-3.log", 2)]
    assert "CR2 0xfffffe0000000080 = IDT + 0x80, gate 8; EXITINTINFO 0x800000ec" in found[0].detail
    # A page fault elsewhere, or no state (a kernel without the probe): not this.
    assert emulator_faults.idt_unreadable(tmp_path, IDT_TRIPLE_FAULT.replace("cr2=0xfffffe0000000080", "cr2=0x7ffe55768ff8")) == []
    without_state = re.sub(r", its state [^)]*", "", IDT_TRIPLE_FAULT)
    assert "shutdown at 0x52bc4f (?)) (console" in without_state and emulator_faults.idt_unreadable(tmp_path, without_state) == []
    (tmp_path / "level1-console.log").write_text(IDT_TRIPLE_FAULT)
    assert [e.signature for e in emulator_faults.find(tmp_path, "tcg", {})] == ["idt-unreadable"]
    # Seen on the unpatched kernel (control run 20261206T045513Z-a3bf, base-girq): it may excuse.
    assert "idt-unreadable" in emulator_faults.ATTRIBUTABLE
    # With the paused guest's page walk after the state (lab.invm.reset_watch): the sign says what the tables held.
    walked = IDT_TRIPLE_FAULT.replace(
        "exitinfo1=0x0) (console",
        "exitinfo1=0x0; its page walk: cr2 0xfffffe0000000080 mapped at 0x2a0e080, rip 0x52bc4f mapped at 0x9c3c4f) (console",
    )
    (found,) = emulator_faults.idt_unreadable(tmp_path, walked)
    assert found.detail.endswith("EXITINTINFO 0x800000ec; the guest's own tables: mapped at 0x2a0e080)")
    unmapped = walked.replace("mapped at 0x2a0e080", "NOT PRESENT at the pmd")
    # And the same words through level 1's nested tables (lab.invm.page_walk.nested_summary).
    differ = "level 1's nested tables: 1 of 9 words differ: 0x97dfe0: nested mapped at 0x200fe0 holds 0x0, NOT the guest's 0x2067"
    nested = walked.replace("mapped at 0x9c3c4f) (console", f"mapped at 0x9c3c4f; {differ}) (console")
    (differs,) = emulator_faults.idt_unreadable(tmp_path, nested)
    assert differs.detail.endswith(f"the guest's own tables: mapped at 0x2a0e080; {differ})")
    # ... which is level 1's doing: another sign, one that never excuses.
    assert differs.signature == "nested-tables-differ" and "nested-tables-differ" not in emulator_faults.ATTRIBUTABLE
    whole = "level 1's nested tables: all 17 words the same through them"
    same = walked.replace("mapped at 0x9c3c4f) (console", f"mapped at 0x9c3c4f; {whole}) (console")
    assert [e.signature for e in emulator_faults.idt_unreadable(tmp_path, same)] == ["idt-unreadable"]
    assert emulator_faults.idt_unreadable(tmp_path, unmapped)[0].detail.endswith("the guest's own tables: NOT PRESENT at the pmd)")


def test_a_guest_stopped_in_level_1s_own_state_is_named(tmp_path: Path) -> None:
    """CR3 beyond the guest's RAM at its triple fault: the CPU ran it with a state not its own."""
    from oops_samples import GUEST_IN_HOST_STATE_LINE

    (tmp_path / "level1-config.json").write_text('{"guest_mem_mb": 256}')
    (tmp_path / "level2-console-stress-hostile-policy-0.log").write_text("LAB-GUEST-READY 3.1\n")
    (found,) = emulator_faults.guest_in_host_state(tmp_path, GUEST_IN_HOST_STATE_LINE)
    assert found.signature == "guest-in-host-state" and found.source == "level2-console-stress-hostile-policy-0.log"
    assert "CR3 0x108f69000, beyond its 256 MiB of RAM (RSP 0xffff8881045c8000)" in found.detail
    (tmp_path / "level1-console.log").write_text(GUEST_IN_HOST_STATE_LINE)
    assert "guest-in-host-state" in [e.signature for e in emulator_faults.find(tmp_path, "tcg", {})]
    assert "guest-in-host-state" not in emulator_faults.ATTRIBUTABLE
    # A guest's own page table (inside its RAM), a larger guest, or no config: not this.
    own = GUEST_IN_HOST_STATE_LINE.replace("cr3=0x108f69000", "cr3=0x97d000")
    assert emulator_faults.guest_in_host_state(tmp_path, own) == []
    (tmp_path / "level1-config.json").write_text('{"guest_mem_mb": 8192}')
    assert emulator_faults.guest_in_host_state(tmp_path, GUEST_IN_HOST_STATE_LINE) == []
    (tmp_path / "level1-config.json").unlink()
    assert emulator_faults.guest_in_host_state(tmp_path, GUEST_IN_HOST_STATE_LINE) == []


# Stress run 20261206T094754Z-1a14 (debug profile): a vCPU thread's page-fault entry ran off its stack.
FAULT_RECURSION_1A14 = """\
[ 3154.702538] traps: PANIC: double fault, error_code: 0x0
[ 3154.707937] Oops: double fault: 0000 [#1] PREEMPT SMP KASAN
[ 3154.709074] CPU: 0 UID: 0 PID: 889 Comm: CPU 0/KVM Not tainted 6.12.117-pvsched-lab+ #1
[ 3154.709631] RIP: 0010:exc_page_fault+0x4/0xdb
[ 3154.711199] RSP: 0018:ffff8881085b9000 EFLAGS: 00000083
[ 3154.711885] RAX: ffff8881085b9008 RBX: 0000000000000000 RCX: ffffffff820014f9
[ 3154.712194] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[ 3154.712211] CR2: ffff8881085b8ff8 CR3: 000000010811d000 CR4: 00000000007506b0
[ 3154.712313] Call Trace:
[ 3154.712596] Modules linked in:
[ 3154.713264] ---[ end trace 0000000000000000 ]---
"""
# Debug run 20261206T172501Z-ab7e: the same on CPU 0 while CPU 1's oops printed; its lines come first.
FAULT_RECURSION_AB7E = """\
[  305.932839] Oops: double fault: 0000 [#2] PREEMPT SMP KASAN
[  305.933444] RDX: 1ffff110207ba382 RSI: ffff88812472a450 RDI: 0000000000000008
[  305.933994] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[  305.934075] CR2: 000000003b734730 CR3: 0000000107ae0000 CR4: 00000000007506b0
[  305.934088] CPU: 0 UID: 0 PID: 119 Comm: CPU 0/KVM Tainted: G      D            6.12.117-pvsched-lab+ #1
[  305.934773] Tainted: [D]=DIE
[  305.935041] RIP: 0010:error_entry+0xd/0xc0
[  305.941993] RSP: 0018:ffff88810789b000 EFLAGS: 00000083
[  305.942943] note: CPU 1/KVM[121] exited with irqs disabled
[  305.943131] RAX: 0000000000000000 RBX: ffff88810789b078 RCX: ffffffff820014f9
[  305.943572] CR2: ffff88810789aff8 CR3: 0000000107ae0000 CR4: 00000000007506b0
"""


def test_a_vcpu_threads_page_fault_entry_that_ran_off_its_stack_is_named() -> None:
    assert emulator_faults.vcpu_fault_recursion(FAULT_RECURSION_1A14) == (
        2,
        "CPU 0/KVM at exc_page_fault+0x4, CR2 0xffff8881085b8ff8 = RSP - 8",
    )
    # The other CPU's CR2, printed before this CPU's report began, is not this one's.
    assert emulator_faults.vcpu_fault_recursion("[  305.906671] Oops: general protection fault\n" + FAULT_RECURSION_AB7E) == (
        2,
        "CPU 0/KVM at error_entry+0xd, CR2 0xffff88810789aff8 = RSP - 8",
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Comm: CPU 0/KVM", "Comm: qemu-system-x86"),  # not a vCPU thread
        ("RIP: 0010:exc_page_fault+0x4/0xdb", "RIP: 0010:pvsched_apply+0x4/0xdb"),  # ran off the stack elsewhere
        ("CR2: ffff8881085b8ff8", "CR2: ffff8881085b7ff8"),  # a fault far below the stack pointer
        ("CR2: ffff8881085b8ff8", "CR2: ffff8881085b9010"),  # above it
        ("Oops: double fault", "Oops: general protection fault"),  # no double fault
    ],
)
def test_a_double_fault_of_another_shape_is_no_vcpu_fault_recursion(old: str, new: str) -> None:
    assert emulator_faults.vcpu_fault_recursion(FAULT_RECURSION_1A14.replace(old, new)) == (0, "")


def test_a_vcpu_fault_recursion_is_found_in_level1s_log_and_excuses_nothing(tmp_path: Path) -> None:
    (tmp_path / "level1-dmesg.txt").write_text("[   1.0] boot\n" + FAULT_RECURSION_1A14)
    (tmp_path / "level1-console.log").write_text("")
    found = emulator_faults.find(tmp_path, "tcg", {})
    assert [(e.signature, e.source, e.line_no) for e in found] == [("vcpu-fault-recursion", "level1-dmesg.txt", 3)]
    assert "vcpu-fault-recursion" not in emulator_faults.ATTRIBUTABLE
