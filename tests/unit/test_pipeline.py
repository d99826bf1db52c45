from __future__ import annotations

import re
from pathlib import Path

import pytest
from oops_samples import NULL_PERCPU_OOPS, NULL_PERCPU_TRACE, SYSTEM_MAP

from lab import pipeline
from lab.pipeline import console_tail
from lab.suites import functional

# Reruns on a sign as if the emulator control had seen it on the unpatched kernel (lab.emulator_faults.ATTRIBUTABLE).
pytestmark = pytest.mark.usefixtures("every_sign_attributable")


def test_console_tail_keeps_the_last_non_blank_lines_indented() -> None:
    output = "\n".join(f"line {i}" for i in range(200)) + "\n\n\n"
    tail = console_tail(output, lines=3).splitlines()
    assert tail == ["    | line 197", "    | line 198", "    | line 199"]


def test_console_tail_of_nothing_says_so() -> None:
    assert "printed nothing" in console_tail("\n \n")


def _pipeline(tmp_path, monkeypatch, attempts):  # type: ignore[no-untyped-def]
    """A Pipeline whose level 1 is replaced by `attempts`: each a report dict, or a str (level 1 hung with it),
    or (kernel log, either of those): the log goes to the console of a hung level 1, to the dmesg of one that finished."""
    import lab.pipeline as pl
    from lab.errors import LabError

    monkeypatch.setattr(pl, "RESULTS_DIR", tmp_path / "results")
    pipe = pl.Pipeline(pl.Options())
    out = pipe.run_dir / "vm"
    out.mkdir(parents=True)
    monkeypatch.setattr(pipe, "prepare_vms", lambda tree, builds: (None, {}, out))
    calls = iter(attempts)
    pipe.record.levels["1"] = {"accel": "tcg"}
    pipe.system_map = tmp_path / "System.map"
    pipe.system_map.write_text(SYSTEM_MAP)

    def boot_level1(level1, module, cfg, out_dir, report):  # type: ignore[no-untyped-def]
        attempt = next(calls)
        log = "[    1.0] boot\n"
        if isinstance(attempt, tuple):
            log, attempt = attempt
        with pipe.step("boot level 1"):
            if isinstance(attempt, str):
                (out_dir / "level1-console.log").write_text(log)
                pipe.scan_log(log, "level1", "vm/level1-console.log")  # as the real one does
                raise LabError(attempt)
        (out_dir / "level1-console.log").write_text("LAB-LEVEL1-DONE\n")
        (out_dir / "level1-dmesg.txt").write_text(log)
        return attempt

    monkeypatch.setattr(pipe, "boot_level1", boot_level1)
    return pipe


def _report(status: str) -> dict[str, object]:
    return {"level2": {"accel": "kvm"}, "tests": [{"name": "t", "level": "level2", "status": status, "message": ""}]}


FAILED_T = "[  140.000000] LAB-FAILED level2/t\n"


def test_a_level1_that_hangs_without_evidence_fails_the_run_at_once(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from lab.pipeline import StepFailed

    pipe = _pipeline(tmp_path, monkeypatch, ["level 1 ended (timed out) without writing level1.json\n  | tail", _report("passed")])
    with pytest.raises(StepFailed):
        functional.run_vms(pipe, None, {})  # type: ignore[arg-type]
    assert pipe.record.failed_step is not None
    assert len(pipe.record.attempts) == 1 and pipe.record.attempts[0]["verdict"].startswith("not excused")
    assert pipe.record.attempts[0]["dir"] == str(pipe.run_dir / "vm")  # the attempt that stands stays in vm/
    assert pipe.record.reruns() == []


def test_a_failed_test_without_evidence_is_not_rerun(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pipe = _pipeline(tmp_path, monkeypatch, [("[   1.0] boot\n" + FAILED_T, _report("failed")), _report("passed")])
    functional.run_vms(pipe, None, {})  # type: ignore[arg-type]
    assert [c.status for c in pipe.record.cases if c.name == "t"] == ["failed"]
    assert pipe.record.status == "failed"
    assert "no emulator sign" in pipe.record.attempts[0]["verdict"]
    assert not (pipe.run_dir / "vm-attempt1").exists()


def test_an_attempt_lost_to_the_emulator_is_rerun_and_everything_in_it_kept(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    pipe = _pipeline(tmp_path, monkeypatch, [(NULL_PERCPU_OOPS + NULL_PERCPU_TRACE, "level 1 ended (timed out)"), _report("passed")])
    functional.run_vms(pipe, None, {})  # type: ignore[arg-type]
    assert pipe.record.status == "passed"
    assert pipe.record.splats and all(s.attributed.startswith("attempt 1 lost to the emulator: null-percpu") for s in pipe.record.splats)
    assert all(s.source == "vm-attempt1/level1-console.log" for s in pipe.record.splats)
    assert pipe.record.reruns()[0]["evidence"][0].startswith("null-percpu")
    checks = [(c.attempt, c.status) for c in pipe.record.cases if c.name == "no_splats_level1"]
    assert checks == [(1, "skipped"), (0, "passed")]  # the lost attempt's check kept, then the clean rerun's
    assert pipe.record.counts() == {"passed": 3, "failed": 0, "skipped": 0}  # the rerun's: t, no_splats x2
    assert pipe.finish() == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("lab: 3 passed, 0 failed, 0 skipped; FLAKY: 1 attempt(s) lost to the emulator (null-percpu)")
    junit = (pipe.run_dir / "junit.xml").read_text()
    assert 'name="attempt1/level1"' in junit


def test_a_failed_test_is_rerun_only_when_it_failed_after_the_sign(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    oops = NULL_PERCPU_OOPS + NULL_PERCPU_TRACE
    pipe = _pipeline(tmp_path, monkeypatch, [(oops + FAILED_T, _report("failed")), _report("passed")])
    functional.run_vms(pipe, None, {})  # type: ignore[arg-type]
    assert [(c.attempt, c.status) for c in pipe.record.cases if c.name == "t"] == [(1, "skipped"), (0, "passed")]
    pipe = _pipeline(tmp_path / "b", monkeypatch, [(FAILED_T.replace("140.0", "100.0") + oops, _report("failed")), _report("passed")])
    functional.run_vms(pipe, None, {})  # type: ignore[arg-type]
    assert [c.status for c in pipe.record.cases if c.name == "t"] == ["failed"]
    assert "at or before it" in pipe.record.attempts[0]["verdict"]


def test_no_retry_and_the_last_attempt_is_never_excused(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from lab.pipeline import StepFailed

    pipe = _pipeline(tmp_path, monkeypatch, [(NULL_PERCPU_OOPS, "hung")])
    pipe.opts.vm_retries = 0
    with pytest.raises(StepFailed):
        functional.run_vms(pipe, None, {})  # type: ignore[arg-type]
    assert pipe.record.status == "failed" and not any(s.attributed for s in pipe.record.splats)
    assert pipe.record.attempts[0]["verdict"].startswith("the last attempt is never excused")


def test_splats_without_emulator_evidence_fail_the_run(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from lab.pipeline import StepFailed

    oops_without_evidence = NULL_PERCPU_OOPS.replace("RAX: 0000000000000000", "RAX: ffff888100000000")
    pipe = _pipeline(tmp_path, monkeypatch, [(oops_without_evidence, "level 1 ended (timed out)"), _report("passed")])
    with pytest.raises(StepFailed):
        functional.run_vms(pipe, None, {})  # type: ignore[arg-type]
    assert pipe.record.status == "failed"
    assert pipe.record.splats and not any(s.attributed for s in pipe.record.splats)


def test_any_exception_or_signal_still_leaves_a_verdict(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json

    import pytest

    pipe = _pipeline(tmp_path, monkeypatch, [])

    def truncated() -> None:
        with pipe.step("boot level 1"):
            json.loads('{"tests": [')

    assert pipe.guarded(truncated) == 1
    summary = json.loads((pipe.run_dir / "summary.json").read_text())
    assert summary["status"] == "error" and summary["error"]["step"] == "boot level 1"
    assert "JSONDecodeError" in summary["error"]["message"] and "Traceback" in summary["error"]["traceback"]
    assert (pipe.run_dir.parent / "latest").resolve() == pipe.run_dir.resolve()

    pipe = _pipeline(tmp_path / "b", monkeypatch, [])

    def sigterm() -> None:
        raise SystemExit(143)

    with pytest.raises(SystemExit):
        pipe.guarded(sigterm)
    summary = json.loads((pipe.run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "SIGTERM" in summary["error"]["message"]
    assert 'tests="0"' in (pipe.run_dir / "junit.xml").read_text()


def test_guests_of_an_emulated_level1_get_slow_host_lockup_thresholds() -> None:
    from lab.invm.level2 import SLOW_HOST_APPEND, qemu_command

    cfg = {"guest_cpus": 2, "guest_mem_mb": 256, "qemu": "qemu", "guest_kernel": "k", "guest_initramfs": "i"}
    emulated = qemu_command({**cfg, "level1_accel": "tcg"}, "kvm")
    native = qemu_command({**cfg, "level1_accel": "kvm"}, "kvm")
    assert SLOW_HOST_APPEND in emulated[emulated.index("-append") + 1]
    assert "watchdog_thresh" not in native[native.index("-append") + 1]


def test_level2_vcpu_threads_are_named_for_the_flip_cell() -> None:
    """QEMU names its vCPU threads "CPU <n>/KVM" only with debug-threads=on; without
    it the control's base-flip cell found none (it flipped nothing, and said so)."""
    from lab.invm.level2 import qemu_command

    cfg = {"guest_cpus": 2, "guest_mem_mb": 256, "qemu": "qemu", "guest_kernel": "k", "guest_initramfs": "i"}
    cmd = qemu_command(cfg, "kvm")
    assert "debug-threads=on" in cmd[cmd.index("-name") + 1].split(",")


def test_the_users_guest_append_comes_last_so_it_wins() -> None:
    from lab.invm.level2 import qemu_command

    cfg = {"guest_cpus": 2, "guest_mem_mb": 256, "qemu": "qemu", "guest_kernel": "k", "guest_initramfs": "i",
           "level1_accel": "tcg", "guest_append": "panic=0 rdinit=/none"}  # fmt: skip
    append = qemu_command(cfg, "kvm", "lab.mode=scx")
    line = append[append.index("-append") + 1]
    assert line.endswith("panic=0 rdinit=/none")
    assert line.index("panic=-1") < line.index("panic=0")


def test_a_guest_that_panics_is_reported_with_its_panic_line_and_console(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lab.invm.level2 import boot_guest
    from lab.runner import Result

    console = "Run /init as init process\n[    6.658939] Kernel panic - not syncing: VFS: Unable to mount root fs\n"
    calls: list[str] = []

    class PanickingRunner:
        def run(self, cmd, label, **_):  # type: ignore[no-untyped-def]
            calls.append(label)
            return Result(list(cmd), 0, console, 1.0, tmp_path / f"{len(calls)}.log")

    cfg = {"guest_cpus": 1, "guest_mem_mb": 64, "qemu": "qemu", "guest_kernel": "k", "guest_initramfs": "i",
           "kvm_timeout": 5, "tcg_timeout": 5}  # fmt: skip
    probe, _ = boot_guest(PanickingRunner(), cfg, "kvm", tmp_path)  # type: ignore[arg-type]
    assert not probe.ok
    assert calls == ["level2 boot (kvm)"]  # no retry: whether to blame the emulator is for the host to prove
    assert probe.reason.startswith("guest kernel panicked: Kernel panic - not syncing: VFS: ")
    assert str(tmp_path / "level2-console-kvm.log") in probe.reason
    assert (tmp_path / "level2-console-kvm.log").read_text() == console


def test_the_last_lines_of_a_failed_run_name_the_step_fix_and_log_after_the_details(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from lab.errors import LabError
    from lab.pipeline import StepFailed

    pipe = _pipeline(tmp_path, monkeypatch, [])
    console_end = "\n".join(f"    | [ {i}.0] line {i}" for i in range(60))
    try:
        with pipe.step("boot level 1"):
            raise LabError(f"level 1 ended (timed out)\n{console_end}", fix="read the console", log="/x/010.log")
    except StepFailed:
        pass
    assert pipe.finish() == 1
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    verdict = next(i for i, ln in enumerate(lines) if ln.startswith("FAILED at step 'boot level 1'"))
    assert lines[verdict] == "FAILED at step 'boot level 1': level 1 ended (timed out)"
    assert lines[verdict + 1 : verdict + 3] == ["fix: read the console", "log: /x/010.log"]
    assert lines[verdict - 1].endswith("line 59")  # the details come just before
    assert len(lines) - verdict <= 6


def test_artifacts_say_whether_they_came_from_the_cache(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import time

    pipe = _pipeline(tmp_path, monkeypatch, [])
    old = tmp_path / "entry-old"
    old.write_text("built by an earlier run")
    time.sleep(0.05)
    pipe._note_artifact("bpf", old, time.time())
    since = time.time()
    fresh = tmp_path / "entry-new.tmp"
    fresh.write_text("built now")
    pipe._note_artifact("initramfs", fresh.rename(tmp_path / "entry-new"), since)
    assert pipe.record.build["bpf"]["cache"] == "hit"
    assert pipe.record.build["initramfs"]["cache"] == "miss"
    assert pipe.record.build["initramfs"]["path"] == str(tmp_path / "entry-new")


def test_every_object_the_makefile_builds_to_be_refused_is_tried_in_level1():
    """A refused object left out of the level-1 config would be a check that never runs."""
    makefile = (Path(__file__).parents[2] / "bpf" / "Makefile").read_text()
    line = next(ln for ln in makefile.splitlines() if ln.startswith("REJECTED :="))
    built = set(re.findall(r"pvsched_bad_\w+", line))
    assert built == set(pipeline.REJECTED_BPF)
    for name in built:
        assert (Path(__file__).parents[2] / "bpf" / f"{name}.bpf.c").is_file()


def test_an_attempt_failed_on_splats_alone_is_judged_like_any_other(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Test run efab: every check passed, then the sched_ext guest stalled
    # (an RCU stall in it, its vCPU at level 1's VMRUN return); the run
    # failed on no_splats_level2 alone, never judged. With an emulator sign
    # before the splat it is the emulator's and run again; without, it stands.
    pipe = _pipeline(tmp_path, monkeypatch, [(NULL_PERCPU_OOPS + NULL_PERCPU_TRACE, _report("passed")), _report("passed")])
    functional.run_vms(pipe, None, {})  # type: ignore[arg-type]
    assert pipe.record.status == "passed" and len(pipe.record.reruns()) == 1
    assert pipe.record.splats and all(s.attributed.startswith("attempt 1 lost to the emulator") for s in pipe.record.splats)
    assert pipe.record.attempts[0]["failed"] == ["level1/no_splats_level1"]  # what the summary says failed
    oops_without_evidence = NULL_PERCPU_OOPS.replace("RAX: 0000000000000000", "RAX: ffff888100000000")
    pipe = _pipeline(tmp_path / "b", monkeypatch, [(oops_without_evidence, _report("passed")), _report("passed")])
    functional.run_vms(pipe, None, {})  # type: ignore[arg-type]
    assert pipe.record.status == "failed" and pipe.record.reruns() == []
    assert pipe.record.attempts[0]["verdict"].startswith("not excused")
