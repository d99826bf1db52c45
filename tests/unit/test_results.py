from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.ktap import Case
from lab.results import RunRecord, junit_xml, write_results
from lab.splats import Splat


def _record() -> RunRecord:
    rec = RunRecord(run_id="r1", started="t0", profile="default")
    rec.levels = {"1": {"accel": "tcg", "boot_seconds": 9.5}, "2": {"accel": "kvm", "boot_seconds": 20.1}}
    rec.build = {
        "host": {"cache": "miss", "seconds": 600.0},
        "guest": {"cache": "hit", "seconds": 0.0, "shared_with": "host"},
    }
    rec.cases = [Case("guest_under_kvm", "level2", "passed"), Case("bpf_program_loads", "level1", "skipped", "why")]
    return rec


def test_passing_run_writes_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    step_summary = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    run_dir = tmp_path / "results" / "r1"
    write_results(run_dir, _record())
    data = json.loads((run_dir / "summary.json").read_text())
    assert data["status"] == "passed"
    assert data["levels"]["2"]["accel"] == "kvm"
    assert data["tests"]["passed"] == 1 and data["tests"]["skipped"] == 1 and data["tests"]["failed"] == 0
    assert data["build"]["guest"]["cache"] == "hit"
    assert (tmp_path / "results" / "latest").resolve() == run_dir.resolve()
    assert "PASSED" in (run_dir / "summary.md").read_text()
    assert step_summary.read_text() == (run_dir / "summary.md").read_text()


@pytest.mark.parametrize("breaker", ["case", "splat", "step"])
def test_any_failure_fails_the_run(breaker: str) -> None:
    rec = _record()
    if breaker == "case":
        rec.cases.append(Case("x", "level2", "failed", "boom"))
    elif breaker == "splat":
        rec.splats.append(Splat("level1", "warning", 3, "WARNING: CPU: 0 PID: 1 at x", "dmesg"))
    else:
        rec.failed_step = {"step": "build host", "message": "m", "log": "l"}
    assert rec.status == "failed"
    assert rec.to_json()["status"] == "failed"


def test_latest_moves_to_newest_run(tmp_path: Path) -> None:
    write_results(tmp_path / "a", _record())
    write_results(tmp_path / "b", _record())
    assert (tmp_path / "latest").resolve().name == "b"


def test_junit_counts_failures_per_level() -> None:
    rec = _record()
    rec.cases.append(Case("x", "level2", "failed", "boom"))
    root = ET.fromstring(junit_xml(rec).split("?>", 1)[1])
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert suites["level2"].get("failures") == "1" and suites["level2"].get("tests") == "2"
    assert suites["level1"].get("skipped") == "1"
    failure = root.find(".//testcase[@name='x']/failure")
    assert failure is not None and failure.get("message") == "boom"


def test_a_failed_step_reports_its_fix_and_log(tmp_path: Path) -> None:
    rec = _record()
    rec.failed_step = {"step": "source", "message": "checksum mismatch", "log": "logs/", "fix": 'sha256 = "ab"'}
    write_results(tmp_path / "r", rec)
    md = (tmp_path / "r" / "summary.md").read_text()
    assert '**Fix:** sha256 = "ab"' in md and "(log: `logs/`)" in md
    assert md.index("**Failed step:**") < md.index("**Fix:**") < md.index("(log:")
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["failed_step"]["fix"] == 'sha256 = "ab"'


def test_a_rerun_run_that_failed_all_the_same_does_not_read_as_passed(tmp_path: Path) -> None:
    """As stress run 20261204T130040Z-2708 did: attempt 1 excused (stuck-in-guest)
    and rerun, attempt 2 failed; its summary.md said "passed only after 1 rerun"."""
    from lab.results import markdown

    rec = _record()
    rec.attempts = [{"failed": ["level 1 ended"], "verdict": "lost to the emulator: stuck-in-guest", "dir": "vm-attempt1"}]
    assert "**Flaky: passed only after 1 rerun(s) excused by emulator signs**" in markdown(rec)
    rec.attempts.append({"failed": ["level 1 ended"], "verdict": "not excused: oops", "dir": "vm"})
    rec.cases.append(Case("x", "level1", "failed", "boom"))
    md = markdown(rec)
    assert "passed only after" not in md
    assert "**Flaky: failed even after 1 rerun(s) excused by emulator signs**" in md
