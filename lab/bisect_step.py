"""One `git bisect run` step: build, boot and judge the commit checked out in the bisect clone.

Called by git as `python -m lab bisect-step --state DIR`; its exit status is
the verdict (0 good, 1 bad, 125 skip, 128 abort the bisect).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from lab import ui
from lab.bisector import (
    BAD,
    GOOD,
    SKIP,
    STEP_REF,
    Bisector,
    BisectState,
    Criterion,
    attempts_needed,
    combine,
    pin_step_commit,
    predicate_argv,
    state_id,
    step_record,
)
from lab.errors import LabError
from lab.paths import cache_dir
from lab.pipeline import Options, Pipeline, StepFailed
from lab.runner import Runner
from lab.suites import bench as bench_suite
from lab.suites import functional

ABORT = 128
# A bench step measures its one mode this many times and judges the median.
BISECT_BENCH_ROUNDS = 3

# A failed step decides the verdict: the machine cannot run the lab (abort
# the bisect), the commit cannot be built as configured (skip it), or the
# built kernel failed to boot or run (bad, once the retries also failed).
MACHINE_STEPS = ("doctor", "source")
UNBUILDABLE_STEPS = ("config ", "build ")


def run_step(state_dir: Path, commit: str | None = None) -> int:
    """Judge BISECT_HEAD (as `git bisect run` asks) or, to reproduce a verdict, `commit`."""
    state = BisectState.from_json(json.loads((state_dir / "state.json").read_text()))
    bisector = Bisector(Runner(state_dir / "step-logs"), state_dir)
    src = bisector.src
    sha = pin_step_commit(bisector.runner, src, commit or "BISECT_HEAD")
    subject = _git(bisector.runner, src, "log", "-1", "--format=%s", sha)
    ui.info(f"bisect step: {sha[:12]} {subject} ({state.criterion.describe()} = bad)")
    start = time.monotonic()
    verdicts: list[int | None] = []
    attempts: list[dict[str, Any]] = []
    while True:
        try:
            verdict, info = judge_once(state, src)
        except Exception as exc:  # noqa: BLE001 - a lab bug must stop the bisect, not read as "bad"
            ui.failure("bisect aborted:", f"the step itself failed: {exc!r}")
            raise SystemExit(ABORT) from exc
        if verdict == ABORT:
            return ABORT
        verdicts.append(verdict)
        attempts.append(info)
        if not attempts_needed(verdicts, state.retries):
            break
        ui.info(f"bisect step: attempt {len(verdicts)} was not good ({info.get('why')}); retrying")
    final = combine(verdicts)
    if commit is None:
        bisector.record_step(step_record(sha, subject, attempts, final, time.monotonic() - start))
    ui.info(f"bisect step: {sha[:12]} is {({GOOD: 'good', BAD: 'bad', SKIP: 'skipped'})[final]}")
    return final


def runtime_of(state: BisectState) -> dict[str, Any]:
    """Where the bisect's steps run their commands (`--container`, `--engine`)."""
    return {"container": bool(state.extra.get("container")), "engine": state.extra.get("engine")}


def judge_once(state: BisectState, src: Path) -> tuple[int | None, dict[str, Any]]:
    """Build and run the commit once; (verdict or None when it could not judge, details)."""
    if state.extra.get("lab_tree"):
        # The lab's own tree and build directory: steps near the series head
        # rebuild incrementally from the last ordinary run.
        opts = Options(profile=state.profile, install=False, lab_tree_commit=(str(src), STEP_REF), vm_retries=0,
                       **runtime_of(state))  # fmt: skip
    else:
        # A user's tree: its own checkout and build directory, shared by every
        # bisect of a user tree (one incremental build).
        opts = Options(
            profile=state.profile,
            install=False,
            source_git=str(src),
            source_ref=STEP_REF,
            series=False,  # the commits already hold their patches
            tree_name="bisect",
            build_tag=f"bisect-{state.profile}",
            vm_retries=0,  # the bisect step retries the whole attempt itself
            **runtime_of(state),
        )
    crit = state.criterion
    pipe = Pipeline(opts)
    if crit.bench:
        mode = crit.bench_parts()[0]
        bench_suite.run(pipe, {"duration": crit.duration, "rounds": BISECT_BENCH_ROUNDS, "warmup": 0, "settle_s": 5, "interval_us": 500,
                    "hist_us": 100000, "modes": [mode], "overhead_rounds": 0, "load_workers": 1})  # fmt: skip
    else:
        functional.run(pipe)
    record = pipe.record
    info: dict[str, Any] = {"run": str(pipe.run_dir), "status": record.status}
    failed = record.failed_step
    if failed:
        info["why"] = f"step {failed['step']} failed: {failed['message'].splitlines()[0]}"
        if failed["step"].startswith(MACHINE_STEPS):
            ui.failure("bisect aborted:", f"{info['why']} (see {failed['log']})")
            return ABORT, info
        if failed["step"].startswith(UNBUILDABLE_STEPS):
            return SKIP, info
        return BAD, info
    if crit.bench:
        verdict, value = crit.judge_bench(record.bench or {})
        info["value"] = value
        info["why"] = f"{crit.bench} = {value} (median of {(record.bench or {}).get('rounds', 0)} rounds)"
        if verdict is None:
            # The kernel booted but the guest could not be measured (it stalled
            # or timed out): as bad a regression as a number over the threshold.
            failed_cases = [f"{c.name}: {c.message}" for c in record.cases if c.status == "failed"]
            info["why"] = f"{crit.bench} not measured ({'; '.join(failed_cases)[:300]})"
            return BAD, info
        return verdict, info
    cases = [c.to_dict() for c in record.cases]
    verdict = crit.judge_tests(cases)
    info["why"] = f"{crit.test}: {next((c['status'] for c in cases if c['name'] == crit.test), 'did not run')}"
    return verdict, info


def _git(runner: Runner, tree: Path, *args: str) -> str:
    out = runner.run(["git", "-C", str(tree), *args], f"git {args[0]}", check=False)
    if out.returncode != 0:
        raise LabError(f"git {' '.join(args)} failed in {tree}: {out.output.strip()}")
    return out.output.strip()


def _descends(runner: Runner, tree: Path, base: str, ref: str) -> bool:
    return runner.run(["git", "-C", str(tree), "merge-base", "--is-ancestor", base, ref], "git merge-base", check=False).returncode == 0


def run_bisect(
    good: str | None,
    bad: str | None,
    tree: str | None,
    criterion: Criterion,
    retries: int,
    profile: str,
    restart: bool,
    container: bool = False,
    engine: str | None = None,
) -> int:
    """`lab bisect`: prepare the tree, start or resume the bisect, print the first bad commit."""
    # The lab's patched tree (the pinned base plus one commit per patch) is the
    # default, and where commits that descend from its base are built.
    pipe = Pipeline(Options(profile=profile, install=False))
    try:
        source = pipe.source()
    except StepFailed:
        return pipe.finish()
    if tree is None:
        tree_path, bad, good = source.path, bad or source.head, good or source.base
    else:
        tree_path = Path(tree).expanduser().resolve()
    if not good or not bad:
        raise LabError("bisect needs --good and --bad with --tree", fix="pass both refs, e.g. --good v6.12 --bad HEAD")
    state_dir = cache_dir() / "bisect" / state_id(tree_path, good, bad, criterion)
    if restart and state_dir.exists():
        shutil.rmtree(state_dir)
    runner = Runner(state_dir / "git-logs")
    bisector = Bisector(runner, state_dir)
    previous = state_dir / "result.json"
    if previous.exists():
        ui.info(f"bisect already finished; showing {previous} (pass --restart to run it again)")
        return report(json.loads(previous.read_text()), state_dir)
    state = BisectState(str(tree_path), good, bad, criterion, retries, profile, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    # A clone of the lab's tree (e.g. a series on top of ours) builds in the
    # lab's tree; an unrelated kernel tree in a checkout of its own.
    state.extra["lab_tree"] = tree is None or _descends(runner, tree_path, source.base, good)
    state.extra.update(container=container, engine=engine)
    ui.info(f"bisect {good}..{bad} in {tree_path}: bad = {criterion.describe()}; state in {state_dir}")
    bisector.start(state)
    bisector.run(predicate_argv(state_dir))
    return report(json.loads(previous.read_text()), state_dir)


def report(result: dict[str, Any], state_dir: Path) -> int:
    """Print the first bad commit with its log and the command that reproduces it."""
    steps = result["steps"]
    first = result["first_bad"]
    if first is None:
        ui.console.print("[yellow]bisect could not decide:[/] only skipped commits left; the first bad commit is one of:")
        for sha in result["candidates"]:
            ui.info(f"  {sha}")
        return 1
    step = next((s for s in reversed(steps) if s["commit"] == first), None)
    subject = step["subject"] if step else ""
    ui.console.print(f"[bold]first bad commit:[/] {escape(f'{first} {subject}')}")
    if step:
        runs = [a["run"] for a in step["attempts"]]
        ui.info(f"  judged bad in: {', '.join(runs)} ({'; '.join(a.get('why', '') for a in step['attempts'])})")
    ui.info(f"  steps: {state_dir / 'steps.jsonl'}; bisect log: {state_dir / 'result.json'}")
    ui.info(f"  reproduce: python -m lab bisect-step --state {state_dir} --commit {first}")
    print(f"bisect: first bad commit {first}", flush=True)
    return 0
