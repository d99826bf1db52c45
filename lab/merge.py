"""`python -m lab merge DIR...`: many runs' results as one report (a CI
matrix, several machines): merged junit.xml (a suite per run and level),
summary.md (a row per run, then every failure) and merged.json."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from lab.errors import LabError


def load_with_dirs(dirs: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Each run once, with the directory it was first found in: a run can
    be reached twice (`results/latest` is a link to a run's directory)."""
    runs: dict[str, tuple[Path, dict[str, Any]]] = {}
    for d in dirs:
        path = d / "summary.json"
        try:
            run = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise LabError(f"cannot read {path}: {exc}", fix="pass results/<run-id> directories of finished runs") from exc
        runs.setdefault(run["run_id"], (d, run))
    if not runs:
        raise LabError("nothing to merge", fix="python -m lab merge results/<id> results/<id> ...")
    return list(runs.values())


def load(dirs: list[Path]) -> list[dict[str, Any]]:
    return [run for _, run in load_with_dirs(dirs)]


def label(run: dict[str, Any]) -> str:
    host = run.get("host") or {}
    where = host.get("runner") or "unknown host"
    return f"{run['run_id']} ({run.get('profile', 'default')}, {where})"


def junit(runs: list[dict[str, Any]]) -> str:
    total = sum(len(r["tests"]["cases"]) + (1 if r.get("failed_step") else 0) for r in runs)
    suites = ET.Element("testsuites", name="pvsched-lab merged", tests=str(total))
    for run in runs:
        cases = run["tests"]["cases"]
        if run.get("failed_step"):
            step = ET.SubElement(suites, "testsuite", name=f"{run['run_id']}/steps", tests="1", failures="0", errors="1", skipped="0")
            el = ET.SubElement(step, "testcase", classname=f"pvsched_lab.{run['run_id']}.steps", name=run["failed_step"]["step"])
            ET.SubElement(el, "error", message=run["failed_step"]["message"][:500]).text = run["failed_step"]["message"]
        for level in sorted({(c.get("attempt", 0), c["level"]) for c in cases}):
            mine = [c for c in cases if (c.get("attempt", 0), c["level"]) == level]
            name = f"{run['run_id']}/" + (f"attempt{level[0]}/{level[1]}" if level[0] else level[1])
            suite = ET.SubElement(
                suites, "testsuite", name=name, tests=str(len(mine)),
                failures=str(sum(c["status"] == "failed" for c in mine)), skipped=str(sum(c["status"] == "skipped" for c in mine)),
            )  # fmt: skip
            for c in mine:
                el = ET.SubElement(suite, "testcase", classname=f"pvsched_lab.{name.replace('/', '.')}", name=c["name"],
                                   time=f"{float(c.get('seconds', 0)):.2f}")  # fmt: skip
                if c["status"] == "failed":
                    ET.SubElement(el, "failure", message=c.get("message", "")[:500]).text = c.get("message", "")
                elif c["status"] == "skipped":
                    ET.SubElement(el, "skipped", message=c.get("message", "")[:500])
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def markdown(runs: list[dict[str, Any]]) -> str:
    passed = sum(r["status"] == "passed" for r in runs)
    lines = [f"## pvsched-lab: {len(runs)} runs merged, {passed} passed", "",
             "| run | status | passed | failed | skipped | reruns | failed step |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in runs:
        t = r["tests"]
        step = (r.get("failed_step") or {}).get("step", "")
        lines.append(f"| {label(r)} | {r['status']} | {t['passed']} | {t['failed']} | {t['skipped']} | {r.get('reruns', 0)} | {step} |")
    failures = [(r, c) for r in runs for c in r["tests"]["cases"] if c["status"] == "failed"]
    if failures:
        lines += ["", "| run | failed test | level | message |", "| --- | --- | --- | --- |"]
        for r, c in failures:
            msg = c.get("message", "").replace("|", "\\|").replace("\n", " ")[:120]
            lines.append(f"| {r['run_id']} | {c['name']} | {c['level']} | {msg} |")
    return "\n".join(lines) + "\n"


def merge(dirs: list[Path], out: Path) -> dict[str, Any]:
    found = load_with_dirs(dirs)
    runs = [run for _, run in found]
    out.mkdir(parents=True, exist_ok=True)
    (out / "junit.xml").write_text(junit(runs))
    (out / "summary.md").write_text(markdown(runs))
    merged = {"runs": [{"dir": str(d), "run_id": r["run_id"], "status": r["status"]} for d, r in found],
              "status": "passed" if all(r["status"] == "passed" for r in runs) else "failed"}  # fmt: skip
    (out / "merged.json").write_text(json.dumps(merged, indent=2) + "\n")
    return merged
