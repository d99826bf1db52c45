"""The functional suite (`nox -s lab`, `nox -s tests`): level 1's and level 2's
checks in one level-1 boot, rerun only on proof of an emulator fault."""

from __future__ import annotations

import json
from typing import Any

from lab import ui
from lab.build import KernelBuild
from lab.ktap import Case
from lab.pipeline import Pipeline, StepFailed
from lab.source import SourceTree


def run(pipe: Pipeline) -> int:
    return pipe.run_suite(lambda tree, builds: run_vms(pipe, tree, builds))


def run_vms(pipe: Pipeline, tree: SourceTree, builds: dict[str, KernelBuild]) -> None:
    level1, cfg, out = pipe.prepare_vms(tree, builds)
    # An attempt that failed is run again only when every failure in it
    # is explained by a sign of the emulated CPU (lab.attempts); then its
    # checks are kept as skipped and its splats as attributed, with the
    # sign. Without such evidence, and always in the last attempt, the
    # verdict stands and the run fails.
    attempts: list[dict[str, Any]] = pipe.record.attempts
    while True:
        first_splat, first_case = len(pipe.record.splats), len(pipe.record.cases)
        lost, report = "", None
        try:
            report = pipe.boot_level1(level1, "lab.invm.level1", cfg, out, "level1.json")
        except StepFailed:
            assert pipe.record.failed_step is not None
            lost = pipe.record.failed_step["message"].splitlines()[0]
        pipe.keep_cpu_dump(out)
        if report is not None:
            pipe.record.levels["2"] = report["level2"]
            pipe.record.cases.extend(Case.from_dict(c) for c in report["tests"])
            pipe.scan_log((out / "level1-dmesg.txt").read_text(), "level1", "vm/level1-dmesg.txt")
        pipe.scan_level2(out)
        failed = [(c.level, c.name) for c in pipe.record.cases[first_case:]
                  if c.status == "failed" and not c.name.startswith("no_splats_")]  # fmt: skip
        if not failed and not lost and len(pipe.record.splats) == first_splat:
            break  # passed
        # Splats alone are judged too: a guest stalled by a proven emulator
        # fault after its checks passed is the emulator's (test run efab).
        judgement = pipe.judge_attempt(out, failed, first_splat, lost)
        # What failed, as the summary lists it: the splat checks too (the splats themselves are judged).
        shown = [f"{c.level}/{c.name}" for c in pipe.record.cases[first_case:] if c.status == "failed"]
        attempt: dict[str, Any] = {"failed": shown + ([lost] if lost else []),
                                   "evidence": [e.describe() for e in judgement.evidence], "verdict": judgement.summary()}  # fmt: skip
        if not judgement.excused or len(attempts) >= pipe.opts.vm_retries:
            attempt["dir"] = str(out)
            if judgement.excused:
                attempt["verdict"] = "the last attempt is never excused; " + judgement.summary()
            attempts.append(attempt)
            ui.info(f"attempt {len(attempts)} failed and stands ({attempt['verdict']})")
            if lost:
                raise StepFailed("boot level 1")
            break
        pipe.record.failed_step = None
        kept = pipe.keep_attempt(out, len(attempts) + 1)
        attempt["dir"] = str(kept)
        attempts.append(attempt)
        pipe.excuse_attempt(first_splat, first_case, kept.name, f"attempt {len(attempts)} {judgement.summary()}")
        ui.info(f"attempt {len(attempts)} {judgement.summary()}; rerunning the VM stage (kept in {kept})")
    # Per-vCPU statistics the policies exported (their loaders' last dump).
    for name in ("boost", "scx"):
        stats = out / f"pvsched-{name}-stats.json"
        if stats.exists():
            pipe.record.policies[name] = json.loads(stats.read_text())["vcpus"]
