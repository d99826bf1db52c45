"""Many runs as one report, and as KCIDB I/O data that validates against the published schema."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab import kcidb, merge
from lab.doctor import Check, Tool
from lab.errors import LabError
from lab.hostinfo import collect
from lab.ktap import Case
from lab.results import RunRecord, write_results


def _run(tmp_path: Path, run_id: str, failed: bool = False, failed_step: bool = False) -> Path:
    record = RunRecord(run_id=run_id, started="2026-12-02T00:00:00Z", profile="default", host={"runner": f"runner-{run_id}"})
    record.source = {"identity": "6.12.117+series-abc", "base": "a" * 40, "patches": ["0001-x.patch", "0002-y.patch"]}
    record.build = {"host": {"key": "k1", "cache": "hit", "seconds": 1.5}, "guest": {"key": "k1", "cache": "hit", "seconds": 0.0}}
    record.cases = [
        Case("level2_boots", "level1", "passed"),
        Case("pvsched_guest_registers_every_vcpu", "level2", "failed" if failed else "passed", "1 of 2"),
    ]
    if failed_step:
        record.failed_step = {"step": "boot level 1 and run lab.invm.level1", "message": "level 1 ended without level1.json"}
    out = tmp_path / run_id
    write_results(out, record)
    return out


def test_merge_keeps_every_run_apart_and_says_what_failed(tmp_path: Path) -> None:
    dirs = [_run(tmp_path, "r1"), _run(tmp_path, "r2", failed=True), _run(tmp_path, "r3", failed_step=True)]
    merged = merge.merge(dirs, tmp_path / "merged")
    assert merged["status"] == "failed" and [r["status"] for r in merged["runs"]] == ["passed", "failed", "failed"]
    root = ET.fromstring((tmp_path / "merged" / "junit.xml").read_text().split("\n", 1)[1])
    names = [s.get("name") for s in root]
    assert "r1/level2" in names and "r2/level2" in names and "r3/steps" in names
    assert root.find(".//testsuite[@name='r3/steps']/testcase/error") is not None
    md = (tmp_path / "merged" / "summary.md").read_text()
    assert "3 runs merged, 1 passed" in md and "| r2 | pvsched_guest_registers_every_vcpu | level2 | 1 of 2 |" in md
    assert "runner-r2" in md
    with pytest.raises(LabError, match="cannot read"):
        merge.merge([tmp_path / "absent"], tmp_path / "m2")


def test_a_run_reached_twice_is_merged_once(tmp_path: Path) -> None:
    # An artifact of `results/*/summary.json` holds each run twice: under its
    # id and under `latest`, the link to it (seen in the workflow's report job here).
    run = _run(tmp_path / "results", "r1", failed=True)
    assert (tmp_path / "results" / "latest").resolve() == run.resolve()  # the lab's own link
    dirs = [tmp_path / "results" / "latest", run, _run(tmp_path / "other", "r2")]
    merged = merge.merge(dirs, tmp_path / "merged")
    assert [r["run_id"] for r in merged["runs"]] == ["r1", "r2"]
    assert "2 runs merged, 1 passed" in (tmp_path / "merged" / "summary.md").read_text()
    assert len(kcidb.export(merge.load(dirs))["tests"]) == 4  # 2 cases of each run, once


def test_a_failed_step_is_an_error_case_in_the_runs_own_junit(tmp_path: Path) -> None:
    out = _run(tmp_path, "r9", failed_step=True)
    root = ET.fromstring((out / "junit.xml").read_text().split("\n", 1)[1])
    error = root.find(".//testsuite[@name='steps']/testcase/error")
    assert error is not None and "level1.json" in (error.get("message") or "")


def test_kcidb_export_validates_against_the_published_schema(tmp_path: Path) -> None:
    kcidb_io = pytest.importorskip("kcidb_io")
    dirs = [_run(tmp_path, "r1"), _run(tmp_path, "r2", failed=True), _run(tmp_path, "r3", failed_step=True)]
    data = kcidb.write(dirs, tmp_path / "kcidb.json")
    kcidb_io.schema.LATEST.validate(json.loads((tmp_path / "kcidb.json").read_text()))
    assert len(data["checkouts"]) == 1  # one source, three runs
    assert {b["config_name"] for b in data["builds"]} == {"default-host", "default-guest"}
    statuses = {t["path"]: t["status"] for t in data["tests"] if t["id"].startswith("pvsched_lab:r2")}
    assert statuses["pvsched_lab.level2.pvsched_guest_registers_every_vcpu"] == "FAIL"
    assert any(t["path"] == "pvsched_lab.steps" and t["status"] == "ERROR" for t in data["tests"])
    # What the schema refuses, it refuses: a test with a status KCIDB does not know.
    broken = json.loads(json.dumps(data))
    broken["tests"][0]["status"] = "GREEN"
    with pytest.raises(Exception):  # noqa: B017 - jsonschema's ValidationError, whichever version
        kcidb_io.schema.LATEST.validate(broken)


def test_hostinfo_reads_cpu_nested_and_tool_versions(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cpuinfo").write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\n")
    mod = tmp_path / "sys" / "kvm_amd" / "parameters"
    mod.mkdir(parents=True)
    (mod / "nested").write_text("1\n")
    checks = [
        Check(Tool("qemu", ("qemu-system-x86_64",), ()), "/usr/bin/qemu", (7, 2, 15)),
        Check(Tool("vng", ("vng",), ()), "/x/vng", None),
    ]
    host = collect(checks, proc=proc, sys_module=tmp_path / "sys")
    assert host["cpu_vendor"] == "AuthenticAMD" and host["cpu_model"] == "AMD EPYC 7B13"
    assert host["nested"] == "kvm_amd.nested=1" and host["qemu"] == "7.2.15" and host["virtme_ng"] == "unknown"
    assert collect([], proc=proc, sys_module=tmp_path / "none")["nested"] == "no kvm_amd/kvm_intel module loaded"
