"""Level 1 marks its failed checks and level-2 boots in its kernel log (no VM: a file stands in for /dev/kmsg)."""

from __future__ import annotations

from pathlib import Path

from lab.invm import marks
from lab.ktap import Case


def test_failed_checks_and_level2_boots_are_marked_as_they_happen(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from lab.invm.level1 import Verdicts

    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    monkeypatch.setattr(marks, "KMSG", kmsg)
    cases = Verdicts()
    cases.append(Case("level1_has_kvm", "level1", "passed"))
    cases.extend([Case("bpf_program_loads", "level1", "failed", "x"), Case("pvsched_unboost_after_rt", "level2", "failed")])
    marks.level2_begins("level2-console-kvm.log")
    assert kmsg.read_text().splitlines() == [
        "<3>LAB-FAILED level1/bpf_program_loads",
        "<3>LAB-FAILED level2/pvsched_unboost_after_rt",
        "<3>LAB-LEVEL2-BEGIN level2-console-kvm.log",
    ]
    assert [c.name for c in cases] == ["level1_has_kvm", "bpf_program_loads", "pvsched_unboost_after_rt"]


def test_a_kernel_log_that_cannot_be_written_is_said_on_the_console(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(marks, "KMSG", tmp_path / "absent" / "kmsg")
    marks.failed("level1", "x")
    assert "LAB-FAILED level1/x (not in the kernel log" in capsys.readouterr().out


def test_each_lost_round_and_failure_of_a_stress_part_is_marked(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from lab.invm.stress import Part

    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    monkeypatch.setattr(marks, "KMSG", kmsg)
    part = Part("hostile")
    part.lose("vanilla round 1: no KVM snapshot after the measurement; measured again")
    assert kmsg.read_text().splitlines() == ["<3>LAB-FAILED stress/hostile#001"]  # a lost round is a failure
    part.fail("host stress-ng progress 0.80x of vanilla")
    part.lose("hostile round 2: guest did not start its load; measured again")
    # Each where it happened: the host judges each by its own place.
    assert kmsg.read_text().splitlines() == [f"<3>LAB-FAILED stress/hostile#{n:03d}" for n in (1, 2, 3)]
    from lab.stress_resume import trouble_checks

    assert trouble_checks({"name": "hostile", "failures": part.failures, "lost": part.lost}) == [
        ("stress", f"hostile#{n:03d}") for n in (1, 2, 3)
    ]
    # A part that ran nothing has no mark: judged by its name, found nowhere, never excused.
    assert trouble_checks({"name": "kill", "failures": [], "lost": []}) == [("stress", "kill")]
