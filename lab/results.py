"""Writing a run's results: summary.json, junit.xml, summary.md, results/latest.

summary.json schema (version 1; documented in docs/RESULTS.md):
  schema, run_id, started, finished, status ("passed" | "failed"), profile,
  failed_step ({step, message, log, fix?} | null), source ({version, identity,
  base, head, patches}), build ({<kernel>: {key, cache, seconds,
  shared_with, bzimage_sha256}}), reproducible (null, or after
  --check-reproducible {builds: [{dir, bzimage_sha256, seconds}],
  cached_bzimage_sha256, identical}), levels ({"1"|"2": {accel, boot_seconds,
  probes}}), tests ({passed, failed, skipped, cases: [{name, level, status,
  message, seconds}]}), splats ([{level, kind, line_no, line, source}]).
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.ktap import Case
from lab.splats import Splat

SCHEMA_VERSION = 1


@dataclass
class RunRecord:
    run_id: str
    started: str
    profile: str
    finished: str = ""
    failed_step: dict[str, str] | None = None
    source: dict[str, object] = field(default_factory=dict)
    build: dict[str, dict[str, object]] = field(default_factory=dict)
    reproducible: dict[str, object] | None = None
    levels: dict[str, dict[str, object]] = field(default_factory=dict)
    runtime: dict[str, str] = field(default_factory=lambda: {"kind": "native"})  # or container: engine, image
    host: dict[str, str] = field(default_factory=dict)  # lab.hostinfo: CPU, kernel, nested, QEMU, virtme-ng, runner
    cases: list[Case] = field(default_factory=list)
    splats: list[Splat] = field(default_factory=list)
    bench: dict[str, Any] | None = None
    policies: dict[str, Any] = field(default_factory=dict)
    # Every failed attempt: what failed, the emulator signs, the verdict
    # ("lost to the emulator: ..." when excused and rerun), its directory.
    attempts: list[dict[str, Any]] = field(default_factory=list)
    extra_markdown: str = ""
    stress: dict[str, Any] | None = None
    # Set when the run ended by an exception ("error") or a signal ("interrupted").
    outcome: str = ""
    error: dict[str, str] | None = None

    def failing_splats(self) -> list[Splat]:
        return [s for s in self.splats if not s.attributed]

    def counts(self) -> dict[str, int]:
        """Of the cases whose verdict stands (not those of attempts lost to the emulator)."""
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        for case in self.cases:
            if not case.attempt:
                counts[case.status] += 1
        return counts

    def reruns(self) -> list[dict[str, Any]]:
        """The attempts excused by an emulator sign and run again."""
        return [a for a in self.attempts if str(a.get("verdict", "")).startswith("lost to the emulator")]

    @property
    def status(self) -> str:
        if self.outcome:
            return self.outcome
        bad = self.failed_step is not None or self.counts()["failed"] > 0 or bool(self.failing_splats())
        return "failed" if bad else "passed"

    def to_json(self) -> dict[str, object]:
        return {
            "schema": SCHEMA_VERSION,
            "run_id": self.run_id,
            "started": self.started,
            "finished": self.finished,
            "status": self.status,
            "profile": self.profile,
            "runtime": self.runtime,
            "host": self.host,
            "failed_step": self.failed_step,
            "source": self.source,
            "build": self.build,
            "reproducible": self.reproducible,
            "levels": self.levels,
            "tests": {**self.counts(), "cases": [c.to_dict() for c in self.cases]},
            "splats": [s.to_dict() for s in self.splats],
            "policies": self.policies,
            "attempts": self.attempts,
            "reruns": len(self.reruns()),
            "error": self.error,
            **({"bench": self.bench} if self.bench is not None else {}),
            **({"stress": self.stress} if self.stress is not None else {}),
        }


def junit_xml(record: RunRecord) -> str:
    suites = ET.Element("testsuites", name="pvsched-lab", tests=str(len(record.cases)))
    groups = sorted({(c.attempt, c.level) for c in record.cases})
    if record.failed_step is not None:
        # A step that failed is a result too: an <error> case, so a CI report shows it beside the tests.
        step = ET.SubElement(suites, "testsuite", name="steps", tests="1", failures="0", errors="1", skipped="0")
        el = ET.SubElement(step, "testcase", classname="pvsched_lab.steps", name=record.failed_step["step"], time="0.00")
        ET.SubElement(el, "error", message=record.failed_step["message"][:500]).text = record.failed_step["message"]
    for attempt, level in groups:
        cases = [c for c in record.cases if (c.attempt, c.level) == (attempt, level)]
        name = f"attempt{attempt}/{level}" if attempt else level  # an attempt lost to the emulator, kept beside
        suite = ET.SubElement(
            suites, "testsuite", name=name, tests=str(len(cases)),
            failures=str(sum(c.status == "failed" for c in cases)),
            skipped=str(sum(c.status == "skipped" for c in cases)),
        )  # fmt: skip
        for case in cases:
            el = ET.SubElement(suite, "testcase", classname=f"pvsched_lab.{name}", name=case.name, time=f"{case.seconds:.2f}")
            if case.status == "failed":
                ET.SubElement(el, "failure", message=case.message[:500]).text = case.message
            elif case.status == "skipped":
                ET.SubElement(el, "skipped", message=case.message[:500])
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def markdown(record: RunRecord) -> str:
    c = record.counts()
    lines = [
        f"## pvsched-lab run {record.run_id}: {record.status.upper()}",
        "",
        f"Tests: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped; splats: {len(record.failing_splats())}"
        + (
            f" (and {len(record.splats) - len(record.failing_splats())} in attempts lost to the emulator)"
            if len(record.splats) > len(record.failing_splats())
            else ""
        ),
        "",
    ]
    if record.error:
        lines += [f"**Run ended by {record.outcome}** at step {record.error.get('step')}: {record.error.get('message')}", "",
                  "```", record.error.get("traceback", "").rstrip(), "```", ""]  # fmt: skip
    if record.reruns():
        # A run that failed all the same must not read as a pass.
        outcome = "passed only after" if record.status == "passed" else f"{record.status} even after"
        lines += [f"**Flaky: {outcome} {len(record.reruns())} rerun(s) excused by emulator signs**", ""]
    for i, a in enumerate(record.attempts, 1):
        lines += [f"- attempt {i} failed {', '.join(a['failed'])[:300]}: {a.get('verdict', '')} (kept in `{a.get('dir', '')}`)"]
    if record.attempts:
        lines.append("")
    if record.failed_step:
        lines += [f"**Failed step:** {record.failed_step['step']}: {record.failed_step['message']}",
                  f"(log: `{record.failed_step.get('log', '')}`)", ""]  # fmt: skip
        if "fix" in record.failed_step:
            lines[-2:-2] = [f"**Fix:** {record.failed_step['fix']}"]
    if record.build:
        lines += ["| build | cache | seconds | shared with |", "| --- | --- | --- | --- |"]
        for name, b in record.build.items():
            lines.append(f"| {name} | {b.get('cache')} | {b.get('seconds')} | {b.get('shared_with') or ''} |")
        lines.append("")
    if record.levels:
        lines += ["| level | accel | boot seconds |", "| --- | --- | --- |"]
        for level, info in sorted(record.levels.items()):
            lines.append(f"| {level} | {info.get('accel')} | {info.get('boot_seconds')} |")
        lines.append("")
    if record.cases:
        lines += ["| test | level | status | message |", "| --- | --- | --- | --- |"]
        for case in record.cases:
            msg = case.message.replace("|", "\\|").replace("\n", " ")[:120]
            lines.append(f"| {case.name} | {case.level} | {case.status} | {msg} |")
        lines.append("")
    if record.policies:
        lines += ["| policy | vCPU | tid | boosts | time boosted s | throttles | refused | events (enter/exit/halt/inj) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for policy, vcpus in record.policies.items():
            for v in vcpus:
                events = "/".join(str(v.get(k, 0)) for k in ("vmenter", "vmexit", "halt", "intr_inj"))
                lines.append(
                    f"| {policy} | {v.get('vcpu_id')} | {v.get('tid')} | {v.get('kernel_boosts', v.get('boost_requests'))} | "
                    f"{v.get('kernel_boosted_ns', 0) / 1e9:.3f} | {v.get('kernel_throttles', 0)} | {v.get('refused', 0)} | {events} |"
                )
        lines.append("")
    for s in record.splats:
        why = f" (attributed to the emulator: {s.attributed})" if s.attributed else ""
        lines.append(f"- splat ({s.level}, {s.kind}) `{s.line}` in {s.source}:{s.line_no}{why}")
    if record.extra_markdown:
        lines += ["", record.extra_markdown]
    return "\n".join(lines) + "\n"


def write_results(run_dir: Path, record: RunRecord) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(record.to_json(), indent=2) + "\n")
    (run_dir / "junit.xml").write_text(junit_xml(record))
    md = markdown(record)
    (run_dir / "summary.md").write_text(md)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a") as f:
            f.write(md)
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, latest)  # atomic: readers never see a missing link
