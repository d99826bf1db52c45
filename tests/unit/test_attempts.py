"""The retry rules (lab.attempts) on kept attempts' text: what may excuse what."""

from __future__ import annotations

from pathlib import Path

import pytest
from oops_samples import NULL_PERCPU_OOPS, NULL_PERCPU_TRACE, SYSTEM_MAP

from lab import attempts, emulator_faults
from lab.splats import scan

# Which signs may excuse, as shipped (before the fixture below widens it).
SHIPPED_ATTRIBUTABLE = emulator_faults.ATTRIBUTABLE
# How signs excuse; which signs may is the emulator control's (test at the end).
pytestmark = pytest.mark.usefixtures("every_sign_attributable")

OOPS = NULL_PERCPU_OOPS + NULL_PERCPU_TRACE
MARK_BEFORE = "[   90.100000] LAB-FAILED level1/pvsched_unboost_restores_vcpu_thread\n"
MARK_AFTER = "[  140.000000] LAB-FAILED level1/pvsched_unboost_restores_vcpu_thread\n"
CHECK = [("level1", "pvsched_unboost_restores_vcpu_thread")]


def _judge(tmp_path: Path, dmesg: str, checks: list[tuple[str, str]], lost: str = "") -> attempts.Judgement:
    (tmp_path / "System.map").write_text(SYSTEM_MAP)
    (tmp_path / "level1-dmesg.txt").write_text(dmesg)
    (tmp_path / "level1-console.log").write_text("")
    signs = emulator_faults.find(tmp_path, "tcg", emulator_faults.read_symbols(tmp_path / "System.map"))
    failures = attempts.failures_of(tmp_path, checks, scan(dmesg, "level1", "vm/level1-dmesg.txt"), lost)
    return attempts.judge(tmp_path, signs, failures)


def test_a_check_that_failed_after_the_sign_is_excused_with_the_oops(tmp_path: Path) -> None:
    verdict = _judge(tmp_path, "[   1.0] boot\n" + OOPS + MARK_AFTER, CHECK)
    assert verdict.excused, verdict.unexplained
    assert [e.signature for e in verdict.evidence] == ["null-percpu"]
    assert verdict.summary().startswith("lost to the emulator: null-percpu")


def test_a_check_that_failed_before_the_sign_stands(tmp_path: Path) -> None:
    verdict = _judge(tmp_path, "[   1.0] boot\n" + MARK_BEFORE + OOPS, CHECK)
    assert not verdict.excused
    assert "no emulator sign at or before it" in verdict.unexplained[0]


def test_a_failure_with_no_mark_in_the_kernel_log_cannot_be_placed_and_stands(tmp_path: Path) -> None:
    verdict = _judge(tmp_path, "[   1.0] boot\n" + OOPS, CHECK)
    assert not verdict.excused and "no mark in the kernel log" in verdict.unexplained[0]


def test_no_sign_no_excuse(tmp_path: Path) -> None:
    verdict = _judge(tmp_path, "[   1.0] boot\n" + MARK_AFTER, CHECK)
    assert not verdict.excused and verdict.unexplained == [
        "level1/pvsched_unboost_restores_vcpu_thread failed (level1-dmesg.txt:2): no emulator sign"
    ]


def test_the_signature_with_our_code_in_its_trace_is_never_the_emulators(tmp_path: Path) -> None:
    ours = OOPS.replace("svm_vcpu_run+0x3a1/0x7a0", "__kvm_pvsched_event+0x51/0x190")
    verdict = _judge(tmp_path, "[   1.0] boot\n" + ours + MARK_AFTER, CHECK)
    assert not verdict.excused
    assert any("our code in its trace" in why and "__kvm_pvsched_event" in why for why in verdict.unexplained)


def test_a_splat_of_ours_after_the_sign_is_not_excused_by_it(tmp_path: Path) -> None:
    warning = """[  120.000000] ------------[ cut here ]------------
[  120.000100] WARNING: CPU: 1 PID: 77 at arch/x86/kvm/pvsched.c:312 pvsched_apply+0x1f0/0x230
[  120.000300] Call Trace:
[  120.000400]  pvsched_apply_work+0x2a/0x40
[  120.000500] ---[ end trace 0000000000000000 ]---
"""
    verdict = _judge(tmp_path, "[   1.0] boot\n" + OOPS + warning + MARK_AFTER, CHECK)
    assert not verdict.excused
    assert any("pvsched" in why for why in verdict.unexplained)


def test_splats_before_the_sign_stand_those_of_its_own_report_do_not(tmp_path: Path) -> None:
    earlier = "[   50.000000] WARNING: CPU: 0 PID: 1 at kernel/sched/core.c:100 something+0x1/0x2\n"
    verdict = _judge(tmp_path, "[   1.0] boot\n" + earlier + OOPS, [], lost="level 1 ended (timed out)")
    assert not verdict.excused and "level1-dmesg.txt:2" in verdict.unexplained[0]
    # The oops header ("BUG: TASK stack guard page", "Oops:") precedes its Code line: it belongs to the sign.
    verdict = _judge(tmp_path, "[   1.0] boot\n" + OOPS, [], lost="level 1 ended (timed out)")
    assert verdict.excused, verdict.unexplained


def test_a_dump_explains_a_lost_level1_and_its_stalls_not_a_warning(tmp_path: Path) -> None:
    (tmp_path / "level1-cpus.txt").write_text(
        "halted with a pending, deliverable interrupt (QEMU did not wake them, in two snapshots 1.5 s apart): CPUs [0]\n"
    )
    stall = "[  300.000000] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n[  300.1] rcu: \t0-...0: (4696 ticks this GP)\n"
    verdict = _judge(tmp_path, "[   1.0] boot\n" + stall, [], lost="level 1 ended (timed out)")
    assert verdict.excused, verdict.unexplained
    warning = "[  250.000000] WARNING: CPU: 0 PID: 1 at mm/slub.c:1 x+0x1/0x2\n"
    verdict = _judge(tmp_path, "[   1.0] boot\n" + warning + stall, [], lost="level 1 ended (timed out)")
    assert not verdict.excused
    # A task hung in our teardown is ours, whatever the dump says.
    hung = """[  400.000000] INFO: task qemu-system-x86:316 blocked for more than 120 seconds.
[  400.000100] Call Trace:
[  400.000200]  __synchronize_srcu+0x8e/0xd0
[  400.000300]  kvm_pvsched_unregister+0x44/0x120
[  400.000400]  kvm_arch_vcpu_destroy+0x13/0x60
"""
    verdict = _judge(tmp_path, "[   1.0] boot\n" + hung, [], lost="level 1 ended (timed out)")
    assert not verdict.excused and "kvm_pvsched_unregister" in verdict.unexplained[0]


def test_a_dump_whose_stacks_name_our_code_excuses_nothing(tmp_path: Path) -> None:
    lost_wakeup = "halted with a pending, deliverable interrupt (QEMU did not wake them, in two snapshots 1.5 s apart): CPUs [0]\n"
    ours = "\n# CPU#1 stack: the words that name kernel text (like the kernel's '?' frames)\n" + (
        "ffffc90000213b48: ffffffff81051234 = pvsched_cap_timer_fn+0x44\n"
    )
    (tmp_path / "level1-cpus.txt").write_text(lost_wakeup + ours)
    verdict = _judge(tmp_path, "[   1.0] boot\n", [], lost="level 1 ended (timed out)")
    assert not verdict.excused
    assert verdict.unexplained[0] == (
        "lost-wakeup with our code on a CPU's stack (ffffc90000213b48: ffffffff81051234 = pvsched_cap_timer_fn+0x44) is not the emulator's"
    )
    # The same dump with the kernel's own code there excuses the loss.
    (tmp_path / "level1-cpus.txt").write_text(lost_wakeup + ours.replace("pvsched_cap_timer_fn", "tick_nohz_handler"))
    assert _judge(tmp_path, "[   1.0] boot\n", [], lost="level 1 ended (timed out)").excused


def test_an_interrupt_taken_with_if_clear_in_a_dump_is_named_and_excuses_nothing(tmp_path: Path) -> None:
    from lab.monitor import IRQ_WITH_IF_CLEAR_LINE

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(emulator_faults, "ATTRIBUTABLE", SHIPPED_ATTRIBUTABLE)
        # de20's dump said so (lab.monitor.stack_report, test_monitor.py).
        (tmp_path / "level1-cpus.txt").write_text(
            f"{IRQ_WITH_IF_CLEAR_LINE}: CPU#0 RIP ffffffff81001f3b (__switch_to_asm+0x3b) "
            "by asm_sysvec_apic_timer_interrupt, frame at ffffffff81e03dc8\n"
        )
        verdict = _judge(tmp_path, "[   1.0] boot\n", [], lost="level 1 ended (timed out)")
    assert [s.signature for s in verdict.evidence] == ["irq-with-if-clear"]
    assert "asm_sysvec_apic_timer_interrupt" in verdict.evidence[0].detail
    assert not verdict.excused
    assert verdict.unexplained[0].startswith("irq-with-if-clear was never seen on the unpatched kernel")


def test_a_level2_sign_explains_only_what_failed_after_that_guest_started(tmp_path: Path) -> None:
    from oops_samples import NULL_CS_FRAME_OOPS

    (tmp_path / "level2-console-kvm.log").write_text("LAB-GUEST-READY\n" + NULL_CS_FRAME_OOPS)
    begin = "[   60.0] LAB-LEVEL2-BEGIN level2-console-kvm.log\n"
    after = "[  200.0] LAB-FAILED level2/pvsched_unboost_after_rt\n"
    verdict = _judge(tmp_path, "[   1.0] boot\n" + begin + after, [("level2", "pvsched_unboost_after_rt")])
    assert verdict.excused, verdict.unexplained
    before = "[   30.0] LAB-FAILED level1/bpf_program_loads\n"
    verdict = _judge(tmp_path, "[   1.0] boot\n" + before + begin + after, [("level1", "bpf_program_loads")])
    assert not verdict.excused


def test_a_sign_the_control_never_saw_on_the_unpatched_kernel_excuses_nothing(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(emulator_faults, "ATTRIBUTABLE", frozenset({"stuck-in-guest"}))
    verdict = _judge(tmp_path, "[   1.0] boot\n" + OOPS + MARK_AFTER, CHECK)
    assert not verdict.excused
    assert verdict.unexplained[0].startswith("null-percpu was never seen on the unpatched kernel")


def test_a_guest_looping_at_the_vmrun_return_excuses_what_failed_after_its_sample(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from lab import exit_record, landmarks
    from lab.exit_record import VcpuExits

    # Run b103's hotplug guest under the debug profile: silent, vCPU 0 looping at level 1's VMRUN return.
    # Excused since the control's base-girq cell showed it on the unpatched kernel (2026-12-04).
    monkeypatch.setattr(emulator_faults, "ATTRIBUTABLE", SHIPPED_ATTRIBUTABLE)
    (tmp_path / "level1-console.log").write_text("")
    (tmp_path / "level1-dmesg.txt").write_text("[    1.0] boot\n[  900.0] LAB-FAILED level1/stress_hotplug\n")
    loop = VcpuExits(0, 2302, [("npf", 0xFFFFFFFF81E8D210, 2302)])
    exit_record.write_record(tmp_path / exit_record.record_name("stress-hotplug"), {0: loop}, 2.0)
    signs = emulator_faults.find(tmp_path, "tcg", {}, {landmarks.VMRUN_RETURN: 0xFFFFFFFF81E8D210})
    assert [(s.signature, s.line_no) for s in signs] == [("guest-at-vmrun-return", emulator_faults.AT_END)]
    verdict = attempts.judge(tmp_path, signs, attempts.failures_of(tmp_path, [("level1", "stress_hotplug")], [], ""))
    assert not verdict.excused  # a sample alone explains stalls and losses, not a failed check
    # With the guest's console kept, it also explains what failed once that guest began, its own stall included.
    (tmp_path / "level2-console-stress-hotplug.log").write_text(
        "LAB-GUEST-READY 9.1\n[  101.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\nx\n"
    )
    begin = "[  100.0] LAB-LEVEL2-BEGIN level2-console-stress-hotplug.log\n"
    (tmp_path / "level1-dmesg.txt").write_text("[    1.0] boot\n" + begin + "[  900.0] LAB-FAILED level1/stress_hotplug\n")
    signs = emulator_faults.find(tmp_path, "tcg", {}, {landmarks.VMRUN_RETURN: 0xFFFFFFFF81E8D210})
    assert [(s.source, s.line_no) for s in signs] == [("level2-exits-stress-hotplug.json", 0), ("level2-console-stress-hotplug.log", 3)]
    guest = (tmp_path / "level2-console-stress-hotplug.log").read_text()
    stall = scan(guest, "level2", "vm/level2-console-stress-hotplug.log")
    verdict = attempts.judge(tmp_path, signs, attempts.failures_of(tmp_path, [("level1", "stress_hotplug")], stall, ""))
    assert verdict.excused, verdict.unexplained
    # A level-1 WARNING before that guest began stands.
    warning = "[  800.0] WARNING: CPU: 1 PID: 9 at kernel/sched/core.c:1 x+0x1/0x2\n"
    (tmp_path / "level1-dmesg.txt").write_text("[    1.0] boot\n" + warning + begin + "[  900.0] LAB-FAILED level1/stress_hotplug\n")
    splats = scan((tmp_path / "level1-dmesg.txt").read_text(), "level1", "vm/level1-dmesg.txt")
    verdict = attempts.judge(tmp_path, signs, attempts.failures_of(tmp_path, [("level1", "stress_hotplug")], splats, ""))
    assert not verdict.excused


def test_a_guest_that_read_a_null_current_excuses_its_own_splats_only(tmp_path: Path) -> None:
    from oops_samples import GUEST_NULL_CURRENT_OOPS

    from lab.splats import scan_guest_console

    console = GUEST_NULL_CURRENT_OOPS
    (tmp_path / "level2-console-reboot.log").write_text(console)
    (tmp_path / "level1-console.log").write_text("")
    begin = "[   71.1] LAB-LEVEL2-BEGIN level2-console-reboot.log\n"
    (tmp_path / "level1-dmesg.txt").write_text("[    1.0] boot\n" + begin)
    splats = scan_guest_console(console, "level2-console-reboot.log")
    assert splats
    signs = emulator_faults.find(tmp_path, "tcg", {})
    verdict = attempts.judge(tmp_path, signs, attempts.failures_of(tmp_path, [], splats, ""))
    assert verdict.excused, verdict.unexplained
    # A check that failed before that guest started is not explained by it.
    (tmp_path / "level1-dmesg.txt").write_text("[    1.0] boot\n" + MARK_BEFORE + begin)
    verdict = attempts.judge(tmp_path, signs, attempts.failures_of(tmp_path, CHECK, splats, ""))
    assert not verdict.excused and "pvsched_unboost_restores_vcpu_thread" in verdict.unexplained[0]


def _stuck_cpu0_then(tmp_path: Path, report: str) -> attempts.Judgement:
    """Level 1 lost with CPU 0 stuck in a guest (dump and stall) and CPU 1 soft-locked waiting for it."""
    from oops_samples import STUCK_IN_GUEST_DUMP, STUCK_IN_GUEST_STALL

    (tmp_path / "level1-cpus.txt").write_text(STUCK_IN_GUEST_DUMP)
    return _judge(tmp_path, "[   1.0] boot\n" + STUCK_IN_GUEST_STALL.replace("322.", "372.") + report, [],
                  lost="level 1 ended (exit status -9)")  # fmt: skip


def test_stale_addresses_of_ours_beside_a_trace_unwound_to_its_entry_are_not_our_frames(tmp_path: Path) -> None:
    from oops_samples import SOFT_LOCKUP_ORC

    verdict = _stuck_cpu0_then(tmp_path, SOFT_LOCKUP_ORC)
    assert verdict.excused, verdict.unexplained
    assert [e.signature for e in verdict.evidence] == ["stuck-in-guest"]


def test_a_guess_unwinders_trace_cannot_tell_and_every_frame_of_ours_counts(tmp_path: Path) -> None:
    from oops_samples import SOFT_LOCKUP_GUESS

    verdict = _stuck_cpu0_then(tmp_path, SOFT_LOCKUP_GUESS)
    assert not verdict.excused
    assert any("our code in its trace" in why and "pvsched_ops_init_member" in why for why in verdict.unexplained)


def test_our_frame_on_the_unwound_chain_is_ours(tmp_path: Path) -> None:
    from oops_samples import SOFT_LOCKUP_ORC

    ours = SOFT_LOCKUP_ORC.replace("? pvsched_ops_init_member+0x47/0x47", "pvsched_ops_reg+0x47/0x90", 1)
    verdict = _stuck_cpu0_then(tmp_path, ours)
    assert not verdict.excused
    assert any("pvsched_ops_reg" in why for why in verdict.unexplained)
    # A trace cut short (no entry frame) proves no `?` frame stale.
    cut = "".join(line for line in SOFT_LOCKUP_ORC.splitlines(keepends=True) if "entry_SYSCALL" not in line)
    assert not _stuck_cpu0_then(tmp_path, cut).excused


# What the lab printed of a loader that survived SIGKILL (pvsched_host.kernel_stack),
# among the kernel's lines of an RCU stall in the console (run 20261204T133237Z-957e).
LOADER_STACK = (
    "pvsched: loader 512 survives SIGKILL: state D; synchronize_rcu; [<0>] __wait_rcu_gp+0x13c/0x160"
    " | [<0>] synchronize_rcu+0x12e/0x150 | [<0>] pvsched_ops_unreg+0x41/0x60 | [<0>] bpf_struct_ops_map_link_dealloc+0x2c/0x50\n"
)


def test_the_labs_own_lines_among_a_stall_report_are_not_its_trace(tmp_path: Path) -> None:
    from oops_samples import STUCK_IN_GUEST_DUMP, STUCK_IN_GUEST_STALL

    (tmp_path / "level1-cpus.txt").write_text(STUCK_IN_GUEST_DUMP)
    stall = STUCK_IN_GUEST_STALL.replace("322.", "372.").splitlines(keepends=True)
    console = "[   1.0] boot\n" + stall[0] + LOADER_STACK + "".join(stall[1:])
    verdict = _judge(tmp_path, console, [], lost="level 1 ended (exit status -9)")
    assert verdict.excused, verdict.unexplained
    # The same frame printed by the kernel, in the stall's report, is ours.
    kernel_line = "[  372.676950]  pvsched_ops_unreg+0x41/0x60\n"
    verdict = _judge(tmp_path, "[   1.0] boot\n" + stall[0] + kernel_line + "".join(stall[1:]), [],
                     lost="level 1 ended (exit status -9)")  # fmt: skip
    assert not verdict.excused and any("pvsched_ops_unreg" in why for why in verdict.unexplained)


def test_a_guest_that_died_where_level1_resumed_it_excuses_what_failed_after_it_began(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Run 74e9's main guest (debug profile): a triple fault at io_serial_out+0x73, the instruction after `out`.
    monkeypatch.setattr(emulator_faults, "ATTRIBUTABLE", SHIPPED_ATTRIBUTABLE)
    (tmp_path / "level2-console-kvm.log").write_text("LAB-GUEST-READY 9.8\nLAB-PHASE hotplug\nok 14 pvsched_hotplug_online_")
    console = ("level2 kvm: guest did not finish (qemu exit status 0; KVM saw a shutdown exit (triple fault): vCPU 0 shutdown at "
               "0xffffffff81ac0179 (io_serial_out+0x73)) (console /r/vm/level2-console-kvm.log)\n")  # fmt: skip
    (tmp_path / "level1-console.log").write_text(console)
    begin, failed = "[   20.0] LAB-LEVEL2-BEGIN level2-console-kvm.log\n", "[  160.0] LAB-FAILED level1/level2_boots\n"
    before = "[   10.0] LAB-FAILED level1/bpf_program_loads\n"
    (tmp_path / "level1-dmesg.txt").write_text("[    1.0] boot\n" + before + begin + failed)
    signs = emulator_faults.find(tmp_path, "tcg", {}, {}, {0xFFFFFFFF81AC0179: "out"}.get)
    assert [s.signature for s in signs] == ["guest-resumed-past-exit"]
    verdict = attempts.judge(tmp_path, signs, attempts.failures_of(tmp_path, [("level1", "level2_boots")], [], ""))
    assert verdict.excused, verdict.unexplained
    verdict = attempts.judge(tmp_path, signs, attempts.failures_of(tmp_path, [("level1", "bpf_program_loads")], [], ""))
    assert not verdict.excused  # it failed before that guest began


def test_a_guests_sign_does_not_explain_what_failed_once_the_next_guest_began(tmp_path: Path) -> None:
    from oops_samples import NULL_CS_FRAME_OOPS

    (tmp_path / "level2-console-kvm.log").write_text("LAB-GUEST-READY\n" + NULL_CS_FRAME_OOPS)
    begin = "[   60.0] LAB-LEVEL2-BEGIN level2-console-kvm.log\n"
    during = "[  100.0] LAB-FAILED level2/pvsched_unboost_after_rt\n"
    later = "[  200.0] LAB-LEVEL2-BEGIN level2-console-kexec.log\n[  220.0] LAB-FAILED level2/pvsched_kexec_unregisters\n"
    verdict = _judge(tmp_path, "[   1.0] boot\n" + begin + during + later, [("level2", "pvsched_unboost_after_rt")])
    assert verdict.excused, verdict.unexplained
    checks = [("level2", "pvsched_unboost_after_rt"), ("level2", "pvsched_kexec_unregisters")]
    verdict = _judge(tmp_path, "[   1.0] boot\n" + begin + during + later, checks)
    assert not verdict.excused
    assert any("pvsched_kexec_unregisters" in why for why in verdict.unexplained)


def test_a_guests_sign_excuses_its_lost_round_not_the_criterion_failed_after_it(tmp_path: Path) -> None:
    from oops_samples import NULL_CS_FRAME_OOPS

    # The planted cap's run 8d95: hostile policy round 3's guest lost (its
    # sign), then the criterion failed at the part's end, guests later.
    (tmp_path / "level2-console-stress-hostile-policy-3.log").write_text("LAB-GUEST-READY\n" + NULL_CS_FRAME_OOPS)
    dmesg = ("[   1.0] boot\n[ 400.0] LAB-LEVEL2-BEGIN level2-console-stress-hostile-policy-3.log\n"
             "[ 480.0] LAB-FAILED stress/hostile#001\n[ 490.0] LAB-LEVEL2-BEGIN level2-console-stress-hostile-policy-3-again.log\n"
             "[ 600.0] LAB-LEVEL2-BEGIN level2-console-stress-hostile-hostile-4.log\n"
             "[ 634.0] LAB-FAILED stress/hostile#002\n[ 634.0] LAB-FAILED stress/hostile#003\n")  # fmt: skip
    verdict = _judge(tmp_path, dmesg, [("stress", "hostile#001")])
    assert verdict.excused, verdict.unexplained  # the lost round alone: the emulator's
    verdict = _judge(tmp_path, dmesg, [("stress", f"hostile#{n:03d}") for n in (1, 2, 3)])
    assert not verdict.excused
    assert [why.split(" failed")[0] for why in verdict.unexplained] == ["stress/hostile#002", "stress/hostile#003"]


def test_a_guest_that_printed_nothing_has_its_sign_in_its_empty_console(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from lab import exit_record, landmarks
    from lab.exit_record import VcpuExits

    # Test run eadc: the reboot check's guest printed nothing, its vCPU 1 looping
    # at level 1's VMRUN return; the check failed with no data and was not excused.
    monkeypatch.setattr(emulator_faults, "ATTRIBUTABLE", SHIPPED_ATTRIBUTABLE)
    (tmp_path / "level1-console.log").write_text("")
    begin = "[   85.0] LAB-LEVEL2-BEGIN level2-console-reboot.log\n"
    failed = "[  325.2] LAB-FAILED level2/pvsched_reboot_unregisters\n[  325.3] LAB-LEVEL2-BEGIN level2-console-kexec.log\n"
    (tmp_path / "level1-dmesg.txt").write_text("[    1.0] boot\n" + begin + failed)
    (tmp_path / "level2-console-reboot.log").write_text("")
    loop = VcpuExits(1, 523, [("npf", 0xFFFFFFFF81512AA0, 523)])
    exit_record.write_record(tmp_path / exit_record.record_name("reboot"), {1: loop}, 2.0)
    signs = emulator_faults.find(tmp_path, "tcg", {}, {landmarks.VMRUN_RETURN: 0xFFFFFFFF81512AA0})
    assert [(s.source, s.line_no) for s in signs] == [("level2-exits-reboot.json", 0), ("level2-console-reboot.log", 1)]
    checks = [("level2", "pvsched_reboot_unregisters")]
    verdict = attempts.judge(tmp_path, signs, attempts.failures_of(tmp_path, checks, [], ""))
    assert verdict.excused, verdict.unexplained
    # A guest with no console kept at all gives no such place.
    (tmp_path / "level2-console-reboot.log").unlink()
    signs = emulator_faults.find(tmp_path, "tcg", {}, {landmarks.VMRUN_RETURN: 0xFFFFFFFF81512AA0})
    assert not attempts.judge(tmp_path, signs, attempts.failures_of(tmp_path, checks, [], "")).excused


def test_an_interrupt_taken_at_the_vmrun_return_excuses_its_whole_report(tmp_path: Path) -> None:
    """Stress run 6615: the frame that proves it (an APIC timer entry over the
    instruction after VMRUN) is printed 700 lines below the report's header,
    which it explains; its handler's fault is not `null-percpu` (RAX not 0)."""
    from oops_samples import IRQ_AT_VMRUN_RETURN_OOPS, SYSTEM_MAP_IRQ_AT_VMRUN_RETURN, VMRUN_RETURN_6615

    from lab import landmarks

    (tmp_path / "System.map").write_text(SYSTEM_MAP_IRQ_AT_VMRUN_RETURN)
    symbols = emulator_faults.read_symbols(tmp_path / "System.map")
    console = "[  474.982078] LAB-LEVEL2-BEGIN level2-console-stress-hostile-hostile-4.log\n" + IRQ_AT_VMRUN_RETURN_OOPS
    (tmp_path / "level1-console.log").write_text(console)
    signs = emulator_faults.find(tmp_path, "tcg", symbols, {landmarks.VMRUN_RETURN: VMRUN_RETURN_6615})
    assert [s.signature for s in signs] == ["irq-at-vmrun-return"]
    assert signs[0].detail.endswith("asm_sysvec_apic_timer_interrupt over __svm_vcpu_run+0xa0")
    failures = attempts.failures_of(tmp_path, [], scan(console, "level1", "vm/level1-console.log"), "level 1 ended (exit status 255)")
    assert {f.kind for f in failures} >= {"bug", "oops", "panic", "loss"}
    verdict = attempts.judge(tmp_path, signs, failures)
    assert verdict.excused, verdict.unexplained
    # A frame of ours anywhere in the chain down to the interrupted VMRUN return: ours, not the emulator's.
    ours = console.replace("? svm_vcpu_run+0x347/0x645", "? kvm_pvsched_vcpu_enter+0x47/0x90")
    (tmp_path / "level1-console.log").write_text(ours)
    verdict = attempts.judge(tmp_path, signs, attempts.failures_of(tmp_path, [], scan(ours, "level1", "vm/level1-console.log"), ""))
    assert not verdict.excused and any("kvm_pvsched_vcpu_enter" in why for why in verdict.unexplained)
    # Elsewhere than the VMRUN return, or without an interrupt's entry over it: not this sign.
    assert emulator_faults.irq_at_vmrun_return(console, symbols, VMRUN_RETURN_6615 + 2) == (0, "")
    no_entry = console.replace("asm_sysvec_apic_timer_interrupt+0x1a/0x20", "svm_vcpu_enter_exit+0x25/0x37")
    assert emulator_faults.irq_at_vmrun_return(no_entry, symbols, VMRUN_RETURN_6615) == (0, "")
