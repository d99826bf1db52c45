"""The planted-defect catalogue and its kill table (no VM)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab import mutants
from lab.paths import REPO


def test_the_catalogue_covers_what_the_lab_must_catch() -> None:
    catalogue = mutants.load_catalogue()
    assert len(catalogue) >= 15 and sum(m.flaky for m in catalogue) >= 3
    covers = " ".join(m.covers for m in catalogue)
    for area in ("registration", "the mapping", "hook: VM entry", "hook: VM exit", "hook: halt", "hook: interrupt",
                 "allowlist", "boost path", "unboost path", "cap: budget", "cap: period", "sanitizing", "privilege",
                 "hotplug", "missing unregister", "leaked boost", "policy's decision"):  # fmt: skip
        assert area in covers, area
    assert all(m.expect for m in catalogue)


def test_every_mutant_applies_to_the_current_tree_and_changes_it() -> None:
    for mutant in mutants.load_catalogue():
        assert mutant.patch is not None
        check = subprocess.run(["git", "apply", "--check", str(mutant.patch)], cwd=REPO, capture_output=True, text=True)
        assert check.returncode == 0, f"{mutant.name}: {check.stderr}"


def _summary(status: str, failed: list[str], reruns: int = 0, lost: list[str] = ()) -> dict:  # type: ignore[type-arg, assignment]
    cases = [{"name": n, "status": "failed"} for n in failed] + [{"name": n, "status": "skipped", "attempt": 1} for n in lost]
    return {"status": status, "tests": {"cases": cases}, "failed_step": None, "reruns": reruns}


def test_a_mutant_is_killed_when_the_run_does_not_pass() -> None:
    m = mutants.Mutant("cap-never-throttles", "the cap: period", "x", ["pvsched_hostile_guest_throttled"], REPO / "x.patch")
    killed = mutants.outcome_of(m, _summary("failed", ["pvsched_hostile_guest_throttled"]), 4.0, "r")
    assert killed.killed and killed.expected_seen == ["pvsched_hostile_guest_throttled"]
    # Rerun away: the failure of a lost attempt does not count, the run passed: it survived.
    survived = mutants.outcome_of(m, _summary("passed", [], reruns=1, lost=["pvsched_hostile_guest_throttled"]), 9.0, "r")
    assert not survived.killed and survived.failed == []
    crashed = mutants.outcome_of(m, None, 1.0, "")  # no summary is no pass, and no kill either
    assert not crashed.killed and crashed.inconclusive
    table = mutants.kill_table([killed, survived])
    assert "| yes |" in table and "| **no** |" in table and "1 of 2 mutants killed" in table


def test_a_run_that_failed_only_elsewhere_kills_nothing() -> None:
    """mutants-20261204T164808Z: cap-budget-is-the-period's run failed only the
    kexec check (its guest lost to the emulator, as the unmodified tree's was)
    while its own check passed; the kill table said "yes"."""
    m = mutants.Mutant("cap-budget-is-the-period", "the cap: budget", "x", ["pvsched_long_boost_capped"], REPO / "x.patch")
    elsewhere = mutants.outcome_of(m, _summary("failed", ["pvsched_kexec_unregisters"]), 9.3, "r")
    assert not elsewhere.killed and elsewhere.inconclusive
    table = mutants.kill_table([elsewhere])
    assert "inconclusive (not by its checks)" in table and "0 of 1 mutants killed" in table


def test_a_run_that_lost_its_guest_kills_nothing() -> None:
    """mutants-20261203T132817Z: period-rolls-only-on-boost's guest crashed at 2.8 s of boot; every
    check, the expected ones too, failed for want of data."""
    m = mutants.Mutant("period-rolls-only-on-boost", "the cap", "x", ["pvsched_long_boost_capped"], REPO / "x.patch")
    lost = mutants.outcome_of(m, _summary("failed", ["level2_boots", "pvsched_long_boost_capped"]), 5.5, "r")
    assert lost.inconclusive and not lost.killed
    assert "inconclusive (guest lost)" in mutants.kill_table([lost]) and "0 of 1 mutants killed" in mutants.kill_table([lost])
    # A mutant expected to lose its guest is killed by that.
    crasher = mutants.Mutant("oops", "x", "x", ["level2_boots"], REPO / "x.patch")
    assert mutants.outcome_of(crasher, _summary("failed", ["level2_boots"]), 5.0, "r").killed


def test_a_mutant_is_planted_in_a_copy_inside_another_repository(tmp_path: Path) -> None:
    """Where nox -s mutants puts its copies: results/ of the lab's own checkout, a repository."""
    import shutil

    import pytest

    from lab.errors import LabError
    from lab.runner import Runner

    outer = tmp_path / "checkout"
    subprocess.run(["git", "init", "-q", str(outer)], check=True)
    mutant = next(m for m in mutants.load_catalogue() if m.name == "guest-no-kernel-marks")
    scratch = outer / "results" / "scratch" / mutant.name
    shutil.copytree(REPO / "guest", scratch / "guest")
    runner = Runner(tmp_path / "logs")
    # Plain `git apply` there skips the file and exits 0: the copy would run unmodified.
    skipped = runner.run(["git", "apply", "--verbose", str(mutant.patch)], "plain apply", cwd=scratch)
    assert "Skipped patch" in skipped.output and "/* pvsched_guest_cs_attach(" not in (scratch / "guest/pvsched_guest.c").read_text()
    mutants.plant(runner, mutant, scratch)
    assert "/* pvsched_guest_cs_attach(" in (scratch / "guest/pvsched_guest.c").read_text()
    with pytest.raises(LabError, match="plant guest-no-kernel-marks failed"):
        mutants.plant(runner, mutant, scratch)  # already applied: the patch does not apply twice


def test_a_mutant_runs_the_lab_with_its_own_arguments(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    debug = next(m for m in mutants.load_catalogue() if m.name == "freed-with-cap-timer-armed")
    assert debug.args == ("--profile", "debug")
    ran: list[list[str]] = []

    class FakeRunner:
        def run(self, argv, label, **kwargs):  # type: ignore[no-untyped-def]
            ran.append([str(a) for a in argv])
            return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(mutants, "plant", lambda runner, mutant, scratch: None)
    monkeypatch.setattr(mutants.shutil, "copytree", lambda src, dst, ignore=None: Path(dst).mkdir(parents=True))
    mutants.run_one(FakeRunner(), debug, tmp_path / "copy", ["--vm-retries", "1"])  # type: ignore[arg-type]
    assert ran[-1][-5:] == ["run", "--vm-retries", "1", "--profile", "debug"]
    assert "(`--profile debug`)" in mutants.kill_table([mutants.outcome_of(debug, None, 1.0, "")])


def test_a_failed_control_fails_the_session(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """The unmodified tree has no checks of its own to fail: any failure of it
    fails `nox -s mutants`, whatever the mutants did (mutants-20261204T164808Z)."""
    monkeypatch.setattr(mutants, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(mutants, "Runner", lambda logs: logs.mkdir(parents=True, exist_ok=True))
    by_name = {"unmodified": _summary("failed", ["pvsched_kexec_unregisters"]),
               "vm-budget-ignored": _summary("failed", ["pvsched_vm_budget_holds"])}  # fmt: skip
    monkeypatch.setattr(mutants, "run_one", lambda runner, m, scratch, args: mutants.outcome_of(m, by_name[m.name], 1.0, ""))
    assert mutants.run(["vm-budget-ignored"], []) == 1
    assert "CONTROL FAILED" in capsys.readouterr().out
    by_name["unmodified"] = _summary("passed", [])
    assert mutants.run(["vm-budget-ignored"], []) == 0


def test_a_guest_lost_to_an_oops_of_ours_is_the_mutants_doing(tmp_path: Path) -> None:
    """mutants-20261205T214002Z: flaky-oops-at-registration's NULL read in kvm_pvsched_set_msr
    killed a vCPU thread and its guest; no_splats_level1 failed as expected, and the run was
    called inconclusive (guest lost). The same loss beside an oops without our code in it (the
    emulator's null-percpu) still kills nothing."""
    from tests.unit.oops_samples import NULL_PERCPU_OOPS, PLANTED_MSR_OOPS

    m = mutants.Mutant("flaky-oops-at-registration", "an oops (flaky)", "x", ["no_splats_level1"], REPO / "x.patch")
    for oops, killed in ((PLANTED_MSR_OOPS, True), (NULL_PERCPU_OOPS, False)):
        run = tmp_path / str(killed)
        (run / "vm").mkdir(parents=True)
        (run / "vm/level1-dmesg.txt").write_text("[    1.0] boot\n" + oops)
        summary = _summary("failed", ["level2_boots", "pvsched_hotplug_reregisters", "no_splats_level1"])
        # As the lab lists them: the report's header line and its Oops line (the one whose report has the RIP).
        oops_line = 1 + next(i for i, line in enumerate(oops.splitlines(), 1) if "Oops" in line)
        summary["splats"] = [
            {"level": "level1", "kind": "bug", "line_no": 2, "source": "vm/level1-dmesg.txt"},
            {"level": "level1", "kind": "oops", "line_no": oops_line, "source": "vm/level1-dmesg.txt"},
        ]
        outcome = mutants.outcome_of(m, summary, 9.5, str(run))
        assert outcome.killed is killed and outcome.inconclusive is not killed, oops[:80]
        assert outcome.our_splats == (["level1"] if killed else [])
    # A splat of ours at a level the mutant's expected checks do not judge excuses no lost guest.
    other = mutants.Mutant("m", "x", "x", ["no_splats_level2"], REPO / "x.patch")
    run = tmp_path / "True"
    summary = _summary("failed", ["level2_boots", "no_splats_level2"])
    summary["splats"] = [{"level": "level1", "kind": "oops", "line_no": 2, "source": "vm/level1-dmesg.txt"}]
    assert mutants.outcome_of(other, summary, 1.0, str(run)).inconclusive


def test_a_mutant_that_may_take_its_guest_down_is_killed_by_its_checks_all_the_same() -> None:
    """mutants-20261205T214002Z: mapping-at-wrong-gpa's host half overwrote a guest kmalloc
    object; the guest crashed after the RT phase, whose check had failed: inconclusive then."""
    m = mutants.Mutant("mapping-at-wrong-gpa", "the mapping", "x", ["pvsched_rt_task_visible_to_host"], REPO / "x.patch",
                       loses_guest=True)  # fmt: skip
    outcome = mutants.outcome_of(m, _summary("failed", ["level2_boots", "pvsched_rt_task_visible_to_host"]), 10.1, "r")
    assert outcome.killed and "(its guest lost, as it may be)" in mutants.kill_table([outcome])
    # The lost guest alone kills nothing: one of its own checks must fail.
    assert mutants.outcome_of(m, _summary("failed", ["level2_boots", "pvsched_kexec_unregisters"]), 9.0, "r").inconclusive
    plain = mutants.Mutant("mapping-at-wrong-gpa", "the mapping", "x", ["pvsched_rt_task_visible_to_host"], REPO / "x.patch")
    assert mutants.outcome_of(plain, _summary("failed", ["level2_boots", "pvsched_rt_task_visible_to_host"]), 10.1, "r").inconclusive
    assert next(c for c in mutants.load_catalogue() if c.name == "mapping-at-wrong-gpa").loses_guest


def test_an_expected_splat_check_kills_only_on_a_splat_of_ours(tmp_path: Path) -> None:
    """mutants-20261206T003549Z: destroy-keeps-registration tripped the series' own assertion
    (WARN_ON_ONCE in kvm_pvsched_vm_destroy: a VM destroyed with vCPUs registered), then level 1
    hung before its two destroy checks reported. no_splats_level1 is expected of it since; it
    kills only on a splat whose report names the series' code, not on the emulator's oops."""
    from tests.unit.oops_samples import NULL_PERCPU_OOPS, VM_DESTROYED_WITH_VCPUS_WARNING

    m = next(c for c in mutants.load_catalogue() if c.name == "destroy-keeps-registration")
    assert "no_splats_level1" in m.expect
    for report, killed in ((VM_DESTROYED_WITH_VCPUS_WARNING, True), (NULL_PERCPU_OOPS, False)):
        run = tmp_path / str(killed)
        (run / "vm").mkdir(parents=True)
        (run / "vm/level1-console.log").write_text("[    1.0] boot\n" + report)
        summary = _summary("failed", ["no_splats_level1"])
        summary["failed_step"] = {"step": "boot level 1 and run lab.invm.level1"}
        warning = 1 + next(i for i, line in enumerate(report.splitlines(), 1) if "WARNING" in line or "Oops" in line)
        summary["splats"] = [{"level": "level1", "kind": "warning", "line_no": warning, "source": "vm/level1-console.log"}]
        outcome = mutants.outcome_of(m, summary, 19.5, str(run))
        assert outcome.killed is killed, report[:80]
        assert outcome.expected_seen == (["no_splats_level1"] if killed else [])


def test_mutant_names_never_reach_the_lab_runs(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """2026-12-06: `--only A B` ran only A, and B went to every `lab run` as an argument
    (each ended at once in a usage error, the control "failed"). Several names after one
    --only are names; anything else before `--` is refused before any run."""
    from lab import cli

    runs: list[tuple[list[str], list[str]]] = []
    monkeypatch.setattr(mutants, "run", lambda only, lab_args, control: runs.append((only, lab_args)) or 0)
    assert cli._main(["mutants", "--only", "a", "b", "--", "--profile", "debug"]) == 0
    assert cli._main(["mutants", "--only", "a", "--only", "b"]) == 0
    assert runs == [(["a", "b"], ["--profile", "debug"]), (["a", "b"], [])]
    assert cli._main(["mutants", "stray", "--only", "a"]) == 2
    assert len(runs) == 2
