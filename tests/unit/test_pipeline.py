from __future__ import annotations

from oops_samples import NULL_PERCPU_OOPS

from lab.pipeline import console_tail


def test_console_tail_keeps_the_last_non_blank_lines_indented() -> None:
    output = "\n".join(f"line {i}" for i in range(200)) + "\n\n\n"
    tail = console_tail(output, lines=3).splitlines()
    assert tail == ["    | line 197", "    | line 198", "    | line 199"]


def test_console_tail_of_nothing_says_so() -> None:
    assert "printed nothing" in console_tail("\n \n")


def _pipeline(tmp_path, monkeypatch, attempts):  # type: ignore[no-untyped-def]
    """A Pipeline whose level 1 is replaced by `attempts`: each a report dict, or a str (level 1 hung with it)."""
    import lab.pipeline as pl
    from lab.errors import LabError

    monkeypatch.setattr(pl, "RESULTS_DIR", tmp_path / "results")
    pipe = pl.Pipeline(pl.Options())
    out = pipe.run_dir / "vm"
    out.mkdir(parents=True)
    monkeypatch.setattr(pipe, "prepare_vms", lambda tree, builds: (None, {}, out))
    calls = iter(attempts)

    pipe.record.levels["1"] = {"accel": "tcg"}

    def boot_level1(level1, module, cfg, out_dir, report):  # type: ignore[no-untyped-def]
        attempt = next(calls)
        console = "console\n"
        if isinstance(attempt, tuple):  # (console text, outcome)
            console, attempt = attempt
        (out_dir / "level1-console.log").write_text(console)
        with pipe.step("boot level 1"):
            if isinstance(attempt, str):
                pipe._scan(console, "level1", "vm/level1-console.log")  # as the real one does
                raise LabError(attempt)
        for name in ("level1-dmesg.txt", "level2-dmesg.txt"):
            (out_dir / name).write_text("")
        return attempt

    monkeypatch.setattr(pipe, "boot_level1", boot_level1)
    return pipe


def _report(status: str) -> dict[str, object]:
    return {"level2": {"accel": "kvm"}, "tests": [{"name": "t", "level": "level2", "status": status, "message": ""}]}


def test_a_level1_that_hangs_once_is_rerun_and_said(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pipe = _pipeline(tmp_path, monkeypatch, ["level 1 ended (timed out) without writing level1.json\n  | tail", _report("passed")])
    pipe.run_vms(None, {})  # type: ignore[arg-type]
    assert pipe.record.failed_step is None
    assert pipe.record.retried is not None
    assert pipe.record.retried["failed_first"] == ["level 1 ended (timed out) without writing level1.json"]
    assert (pipe.run_dir / "vm-attempt1" / "level1-console.log").exists()
    assert [c.status for c in pipe.record.cases if c.name == "t"] == ["passed"]


def test_a_level1_that_hangs_twice_fails_the_run(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from lab.pipeline import StepFailed

    pipe = _pipeline(tmp_path, monkeypatch, ["hung", "hung again"])
    pipe.opts.vm_retries = 1
    with pytest.raises(StepFailed):
        pipe.run_vms(None, {})  # type: ignore[arg-type]
    assert pipe.record.failed_step is not None and pipe.record.failed_step["message"] == "hung again"


def test_without_retries_a_hang_fails_at_once(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from lab.pipeline import StepFailed

    pipe = _pipeline(tmp_path, monkeypatch, ["hung", _report("passed")])
    pipe.opts.vm_retries = 0
    with pytest.raises(StepFailed):
        pipe.run_vms(None, {})  # type: ignore[arg-type]
    assert pipe.record.retried is None


def test_failed_tests_are_rerun_once_as_before(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pipe = _pipeline(tmp_path, monkeypatch, [_report("failed"), _report("passed")])
    pipe.run_vms(None, {})  # type: ignore[arg-type]
    first = str(pipe.run_dir / "vm-attempt1")
    assert pipe.record.retried == {"failed_first": ["t"], "first_attempt": first, "attempts": [{"failed": ["t"], "dir": first}]}
    assert [c.status for c in pipe.record.cases if c.name == "t"] == ["passed"]


def test_four_reruns_by_default_then_the_last_verdict_stands(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pipe = _pipeline(tmp_path, monkeypatch, ["hung", _report("failed"), _report("passed")])
    pipe.run_vms(None, {})  # type: ignore[arg-type]
    assert pipe.record.retried is not None
    assert [a["failed"] for a in pipe.record.retried["attempts"]] == [["hung"], ["t"]]
    assert (pipe.run_dir / "vm-attempt2").is_dir()
    assert [c.status for c in pipe.record.cases if c.name == "t"] == ["passed"]
    pipe = _pipeline(tmp_path / "b", monkeypatch, [_report("failed")] * 5)
    pipe.run_vms(None, {})  # type: ignore[arg-type]
    assert [c.status for c in pipe.record.cases if c.name == "t"] == ["failed"]  # the fifth attempt's verdict
    assert len(pipe.record.retried["attempts"]) == 4  # type: ignore[index]


def test_an_attempt_lost_to_the_emulator_is_rerun_and_its_splats_listed_not_failing(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pipe = _pipeline(tmp_path, monkeypatch, [(NULL_PERCPU_OOPS, "level 1 ended (timed out)"), _report("passed")])
    pipe.run_vms(None, {})  # type: ignore[arg-type]
    assert pipe.record.status == "passed"
    assert pipe.record.splats and all(s.attributed.startswith("attempt 1: null-percpu") for s in pipe.record.splats)
    assert all(s.source == "vm-attempt1/level1-console.log" for s in pipe.record.splats)
    assert pipe.record.retried["attempts"][0]["emulator"][0].startswith("null-percpu")  # type: ignore[index]
    checks = [c for c in pipe.record.cases if c.name == "no_splats_level1"]
    assert [c.status for c in checks] == ["skipped", "passed"] and "null-percpu" in checks[0].message  # then the clean rerun


def test_splats_without_emulator_evidence_fail_the_run_even_if_the_rerun_passes(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    oops_without_evidence = NULL_PERCPU_OOPS.replace("RAX: 0000000000000000", "RAX: ffff888100000000")
    pipe = _pipeline(tmp_path, monkeypatch, [(oops_without_evidence, "level 1 ended (timed out)"), _report("passed")])
    pipe.run_vms(None, {})  # type: ignore[arg-type]
    assert pipe.record.status == "failed"
    assert pipe.record.splats and not any(s.attributed for s in pipe.record.splats)


def test_the_last_attempt_is_never_excused(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from lab.pipeline import StepFailed

    pipe = _pipeline(tmp_path, monkeypatch, [(NULL_PERCPU_OOPS, "hung")])
    pipe.opts.vm_retries = 0
    with pytest.raises(StepFailed):
        pipe.run_vms(None, {})  # type: ignore[arg-type]
    assert pipe.record.status == "failed" and not any(s.attributed for s in pipe.record.splats)


def test_guests_of_an_emulated_level1_get_slow_host_lockup_thresholds() -> None:
    from lab.invm.level1 import SLOW_HOST_APPEND, qemu_command

    cfg = {"guest_cpus": 2, "guest_mem_mb": 256, "qemu": "qemu", "guest_kernel": "k", "guest_initramfs": "i"}
    emulated = qemu_command({**cfg, "level1_accel": "tcg"}, "kvm")
    native = qemu_command({**cfg, "level1_accel": "kvm"}, "kvm")
    assert SLOW_HOST_APPEND in emulated[emulated.index("-append") + 1]
    assert "watchdog_thresh" not in native[native.index("-append") + 1]


def test_the_users_guest_append_comes_last_so_it_wins() -> None:
    from lab.invm.level1 import qemu_command

    cfg = {"guest_cpus": 2, "guest_mem_mb": 256, "qemu": "qemu", "guest_kernel": "k", "guest_initramfs": "i",
           "level1_accel": "tcg", "guest_append": "panic=0 rdinit=/none"}  # fmt: skip
    append = qemu_command(cfg, "kvm", "lab.mode=scx")
    line = append[append.index("-append") + 1]
    assert line.endswith("panic=0 rdinit=/none")
    assert line.index("panic=-1") < line.index("panic=0")


def test_a_guest_that_panics_is_reported_with_its_panic_line_and_console(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lab.invm.level1 import boot_guest
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
    assert len(calls) == 2  # one retry, then the verdict
    assert probe.reason.startswith("panicked once (log 1.log), retried; guest kernel panicked: Kernel panic - not syncing: VFS: ")
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
