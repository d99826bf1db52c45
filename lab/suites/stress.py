"""The stress suite (`nox -s stress`): level 1 runs the parts
(lab.invm.stress); a lost level-1 boot reruns only what it did not finish
(lab.stress_resume), on proof of an emulator fault."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab import stress_resume, ui
from lab.build import KernelBuild
from lab.errors import LabError
from lab.ktap import Case
from lab.pipeline import Pipeline, StepFailed
from lab.protocol import STRESS_COUNTER_PARTS, STRESS_PARTIAL_REPORT
from lab.source import SourceTree
from lab.vm import Level1


def run(pipe: Pipeline, stress_opts: dict[str, Any]) -> int:
    def suite(tree: SourceTree, builds: dict[str, KernelBuild]) -> None:
        with pipe.step("stress"):
            run_stress(pipe, tree, builds, stress_opts)

    return pipe.run_suite(suite)


def _listed_below(value: Any) -> bool:
    """A detail too large for the table (a dict, or a list of rounds): one line each below it."""
    return isinstance(value, dict) or (isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value))


def stress_markdown(report: dict[str, Any]) -> str:
    lines = ["## Stress", "", "| part | level-1 boot | rounds | failures | lost rounds | seconds | details |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for p in report["parts"]:
        details = ", ".join(f"{k}={v}" for k, v in p["details"].items() if not _listed_below(v))
        excused = f" (+{len(p['lost_excused'])} excused)" if p.get("lost_excused") else ""
        # A part begun after an oops or a warning in level 1 ran on a kernel that may not be whole.
        taint = int(p.get("level1_tainted_at_start", 0))
        boot = f"{p.get('attempt', 1)}" + (" (tainted at start)" if taint > 0 else " (taint unread)" if taint < 0 else "")
        lines.append(f"| {p['name']} | {boot} | {p['rounds']} | {len(p['failures'])} | {len(p.get('lost', []))}{excused} | "
                     f"{p['seconds']} | {details} |")  # fmt: skip
    for i, a in enumerate(report.get("attempts", []), 1):
        lost = f"; lost to the emulator: {'; '.join(a['emulator'])}" if a.get("emulator") else ""
        if "failed_parts" in a:
            what = f"finished, and was run again for {sorted(a['failed_parts'])} ({a['failed'][0]})"
        else:
            what = f"ended early ({a['failed'][0]}) after {a.get('finished_parts') or 'no part'}"
        lines.append(f"\nlevel-1 boot {i} {what}{lost}; kept in `{a['dir']}`")
    for p in report["parts"]:
        for kept in p.get("kept_from", []):
            dropped = f"; its failures, run again: {kept['failures_not_kept']}" if kept["failures_not_kept"] else ""
            what = f"{kept['rounds']} clean rounds"
            if "round_numbers" in kept:  # the hostile part's: four measurements a round
                what = f"rounds {kept['round_numbers']} ({kept['rounds']} measurements)"
            lines.append(f"\n{p['name']}: {what} kept from level-1 boot {kept['attempt']}{dropped}")
    for p in report["parts"]:
        for name, value in p["details"].items():
            runs = [value] if isinstance(value, dict) else value if _listed_below(value) else []
            for i, run in enumerate(runs):
                label = f"{name} {i}" if isinstance(value, list) else name  # a round of a variant
                lines.append(f"\n{p['name']} {label}: " + ", ".join(f"{k}={v}" for k, v in run.items()))

    def counts(end: dict[str, Any]) -> str:
        return ", ".join(f"{k}={v if not isinstance(v, list) else len(v)}" for k, v in end.items())

    for i, end in enumerate(report.get("earlier_end_states", []), 1):
        lines += ["", f"End state of finished boot {i}: {counts(end)}"]
    lines += ["", f"End state: {counts(report['end_state'])}"]
    return "\n".join(lines)


def part_case(part: dict[str, Any]) -> Case:
    """A part's verdict: its failures (a criterion its noise could not resolve among them) and its lost rounds."""
    lost = part.get("lost", [])
    why = "; ".join(part["failures"][:5] + ([f"{len(lost)} rounds lost: {lost[0]}"] if lost else []))
    status = "passed" if stress_resume.part_passed(part) else "failed"
    return Case(f"stress_{part['name']}", "level1", status, f"{part['rounds']} rounds; {why}".rstrip("; "), part["seconds"])


def run_stress(pipe: Pipeline, tree: SourceTree, builds: dict[str, KernelBuild], stress_opts: dict[str, Any]) -> None:
    binaries = {f"bin/{name}": Path(pipe.runner.which(name) or f"/usr/bin/{name}") for name in ("cyclictest",)}
    level1, cfg, out = pipe.prepare_vms(tree, builds, binaries)
    if "pvsched" not in cfg:
        raise LabError("the stress suite needs the pvsched patches (include/uapi/linux/pvsched.h)", fix="restore kernel/patches/series")
    cfg.update(stress_opts)
    report = stress_attempts(pipe, level1, cfg, out)
    pipe.record.stress = report
    pipe.record.cases += [part_case(part) for part in report["parts"]]
    # Boots that finished before a rerun left their state too: all must be clean.
    end = stress_resume.merged_end_state([*report.get("earlier_end_states", []), report["end_state"]])
    checks = {
        "stress_end_no_registered_areas": (end["registered_areas"] == 0, f"{end['registered_areas']} areas registered"),
        "stress_end_no_vm_left": (
            end["vms_left"] == [] and not end["qemu_processes_left"],
            f"VMs {end['vms_left']}, qemu processes {end['qemu_processes_left']}",
        ),  # fmt: skip
        "stress_end_sched_ext_disabled": (end["scx_state"] in ("disabled", "unavailable"), f"state {end['scx_state']}"),
    }
    counters_read = bool({part["name"] for part in report["parts"]} & STRESS_COUNTER_PARTS)  # not with `--parts churn`
    if counters_read:
        checks["stress_counters_consistent"] = (
            not end["inconsistent_counters"] and end["counter_snapshots"] > 0,
            f"{end['counter_snapshots']} snapshots; {end['inconsistent_counters'][:3]}",
        )  # fmt: skip
    for name, (ok, why) in checks.items():
        pipe.record.cases.append(Case(name, "level1", "passed" if ok else "failed", "" if ok else why))
    if not counters_read:
        why = f"no part that reads the per-vCPU counters ran (of {sorted(STRESS_COUNTER_PARTS)})"
        pipe.record.cases.append(Case("stress_counters_consistent", "level1", "skipped", why))
    pipe.record.extra_markdown = stress_markdown(report)
    pipe.scan_log((out / "level1-dmesg.txt").read_text(), "level1", "vm/level1-dmesg.txt")
    pipe.scan_level2(out)


# A lost boot's dmesg, kept after its last finished part (lab.invm.stress), under this name.
LAST_PART_DMESG = "level1-dmesg-last-part.txt"


def _set_aside_last_parts_dmesg(out: Path) -> None:
    """A boot lost in a part has the dmesg kept after the part before, which
    ends before the loss: its splats and signs are in its console only
    (stress run 1a14: a double fault in churn, a dmesg of hostile's end), so
    the console orders the attempt (lab.emulator_faults.timeline_name) and
    the old dmesg is kept beside it under another name."""
    dmesg = out / "level1-dmesg.txt"
    if dmesg.exists():
        dmesg.replace(out / LAST_PART_DMESG)


def stress_attempts(pipe: Pipeline, level1: Level1, cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run the stress parts in level 1. A boot lost on the way, or one that
    finished with failed parts or splats, is rebooted for the parts it had
    not finished, that failed or that the splats hit (lab.stress_resume)
    only when lab.attempts excuses it (every failure and splat explained by
    an emulator sign), up to vm_retries times. Parts
    keep their results from the boot that ran them; each attempt is kept
    and listed, and the last boot is never excused."""
    remaining = list(cfg["parts"])
    done: list[dict[str, Any]] = []
    snapshots, inconsistent = 0, []
    earlier_end_states: list[dict[str, Any]] = []
    attempts: list[dict[str, Any]] = []
    kept_rounds = stress_resume.KeptRounds()
    while True:
        first_splat, first_case = len(pipe.record.splats), len(pipe.record.cases)
        cfg["parts"] = remaining
        cfg.update(kept_rounds.resume_options())
        try:
            report = pipe.boot_level1(level1, "lab.invm.stress", cfg, out, "stress.json")
            pipe.keep_cpu_dump(out)
        except StepFailed:
            pipe.keep_cpu_dump(out)
            _set_aside_last_parts_dmesg(out)
            partial_file = out / STRESS_PARTIAL_REPORT
            partial = json.loads(partial_file.read_text()) if partial_file.exists() else {"parts": []}
            for part in partial["parts"]:
                part["attempt"] = len(attempts) + 1
            finished = {part["name"] for part in partial["parts"]}
            failed_parts = [c for p in partial["parts"] if not stress_resume.part_passed(p) for c in stress_resume.trouble_checks(p)]
            if "current" in partial and stress_resume.part_in_trouble(partial["current"]):
                failed_parts += stress_resume.trouble_checks(partial["current"])
            why = (pipe.record.failed_step or {}).get("message", "level 1 lost").splitlines()[0]
            pipe.scan_level2(out)
            judgement = pipe.judge_attempt(out, failed_parts, first_splat, why)
            attempt: dict[str, Any] = {"failed": [why], "evidence": [e.describe() for e in judgement.evidence],
                                       "verdict": judgement.summary()}  # fmt: skip
            retry = judgement.excused and len(attempts) < pipe.opts.vm_retries and [n for n in remaining if n not in finished]
            if not retry:
                attempt["dir"] = str(out)
                attempts.append(attempt)
                done += [kept_rounds.merge(part) for part in partial["parts"]]
                pipe.record.stress = {"parts": done, "end_state": None, "attempts": attempts, "kept_rounds": kept_rounds.kept}
                pipe.record.attempts = attempts
                raise
            done += [kept_rounds.merge(part) for part in partial["parts"]]
            if "current" in partial:  # the part under way when the boot was lost
                kept_rounds.keep(partial["current"], len(attempts) + 1)
            snapshots += int(partial.get("counter_snapshots", 0))
            inconsistent += partial.get("inconsistent_counters", [])
            remaining = [name for name in remaining if name not in finished]
            pipe.record.failed_step = None
            attempt["finished_parts"] = sorted(finished)
            _lose_stress_boot(pipe, out, attempts, attempt, first_splat, first_case)
            ui.info(f"stress attempt {len(attempts)} {judgement.summary()}; rerunning parts {remaining} (kept in {attempt['dir']})")
            continue
        failed = [part["name"] for part in report["parts"] if not stress_resume.part_passed(part)]
        if len(attempts) >= pipe.opts.vm_retries:
            break
        level1_log = (out / "level1-dmesg.txt").read_text()
        pipe.scan_log(level1_log, "level1", "vm/level1-dmesg.txt")
        pipe.scan_level2(out)
        splats = pipe.record.splats[first_splat:]
        troubles = [c for p in report["parts"] if p["name"] in failed for c in stress_resume.trouble_checks(p)]
        if not failed and not splats:
            del pipe.record.cases[first_case:]  # scanned again with the report below
            break
        judgement = pipe.judge_attempt(out, troubles, first_splat, "")
        if not judgement.excused:
            # The verdict stands: the splats are scanned again with the report below.
            del pipe.record.splats[first_splat:], pipe.record.cases[first_case:]
            ui.info(f"stress parts {failed} failed or left splats, and stand ({judgement.summary()})")
            break
        # Every failure and splat in the finished boot came after an emulator
        # sign: the parts that failed, and those that passed but the splats
        # leave without evidence (none of their rounds kept), are measured
        # again in a new boot; what passed clean stands.
        names = [part["name"] for part in report["parts"]]
        hit = stress_resume.parts_hit_by_splats(splats, level1_log.splitlines(), names)
        rerun = [name for name in names if name in failed or name in hit]
        for part in report["parts"]:
            part["attempt"] = len(attempts) + 1
            if part["name"] in failed:  # its own failures place its trouble: its clean rounds are kept
                kept_rounds.keep(part, len(attempts) + 1)
        done += [kept_rounds.merge(part) for part in report["parts"] if part["name"] not in rerun]
        snapshots += int(report["end_state"]["counter_snapshots"])
        inconsistent += report["end_state"]["inconsistent_counters"]
        earlier_end_states.append(report["end_state"])
        first_splat_text = [f"{s.kind}: {s.line[:100]}" for s in splats[:1]]
        attempt = {"failed": rerun, "evidence": [e.describe() for e in judgement.evidence], "verdict": judgement.summary(),
                   "failed_parts": {p["name"]: p["failures"][:3] or first_splat_text
                                    for p in report["parts"] if p["name"] in rerun}}  # fmt: skip
        _lose_stress_boot(pipe, out, attempts, attempt, first_splat, first_case)
        failed = rerun
        remaining = failed
        ui.info(f"stress attempt {len(attempts)} {judgement.summary()}; rerunning {failed} (kept in {attempt['dir']})")
    for part in report["parts"]:
        part["attempt"] = len(attempts) + 1
    report["parts"] = done + [kept_rounds.merge(part) for part in report["parts"]]
    report["end_state"]["counter_snapshots"] += snapshots
    report["end_state"]["inconsistent_counters"] = inconsistent + report["end_state"]["inconsistent_counters"]
    if earlier_end_states:
        report["earlier_end_states"] = earlier_end_states
    if attempts:
        report["attempts"] = attempts
    pipe.record.attempts = attempts
    return report


def _lose_stress_boot(
    pipe: Pipeline, out: Path, attempts: list[dict[str, Any]], attempt: dict[str, Any], first_splat: int, first_case: int
) -> None:
    """Keep an excused stress boot that is to be run again; its splats listed with the sign."""
    kept = pipe.keep_attempt(out, len(attempts) + 1)
    attempt["dir"] = str(kept)
    attempts.append(attempt)
    pipe.excuse_attempt(first_splat, first_case, kept.name, f"attempt {len(attempts)} {attempt['verdict']}")
