"""A workflow's jobs run here step by step (lab.workflow_steps): its shell
steps, conditions, cache and artifacts, on a small workflow of the same shape."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lab import workflow_steps
from lab.errors import LabError

WORKFLOW = """
name: t
on:
  push:
env:
  CACHE_DIR: {cache}
jobs:
  legs:
    runs-on: ubuntu-24.04
    strategy:
      matrix:
        suite: [functional, bench]
    steps:
      - name: Restore
        id: cache
        uses: actions/cache/restore@v5
        with:
          path: ${{{{ env.CACHE_DIR }}}}
          key: k-${{{{ matrix.suite }}}}-${{{{ hashFiles('inputs/*') }}}}
          restore-keys: k-${{{{ matrix.suite }}}}-
      - name: Work
        env:
          SUITE: ${{{{ matrix.suite }}}}
        run: |
          mkdir -p "$CACHE_DIR" results/run1
          echo "restored: $(cat "$CACHE_DIR/warm" 2>/dev/null || echo none)" > results/run1/summary.json
          echo warm > "$CACHE_DIR/warm"
          echo "## $SUITE" >> "$GITHUB_STEP_SUMMARY"
          echo "LEG=$SUITE" >> "$GITHUB_ENV"
          test "$SUITE" = functional
      - name: Never after a failure
        run: touch results/run1/ran-after-failure
      - name: Own the results
        if: always()
        run: echo "$LEG" > results/run1/leg
      - name: Save
        if: always() && steps.cache.outputs.cache-hit != 'true'
        uses: actions/cache/save@v5
        with:
          path: ${{{{ env.CACHE_DIR }}}}
          key: ${{{{ steps.cache.outputs.cache-primary-key }}}}
      - name: Upload
        if: always()
        uses: actions/upload-artifact@v6
        with:
          name: results-${{{{ matrix.suite }}}}-${{{{ github.run_attempt }}}}
          path: |
            results/*/summary.json
            results/*/leg
  report:
    needs: legs
    if: always() && needs.legs.result != 'skipped'
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/setup-python@v6
        with:
          python-version: "{python}"
      - uses: actions/download-artifact@v7
        with:
          pattern: results-*-${{{{ github.run_attempt }}}}
          path: legs
      - name: Merge
        run: |
          cat legs/*/run1/leg | sort | tr '\\n' ' ' > merged.txt
          python -c 'import sys; print(sys.prefix)' > python-prefix.txt
"""


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    path = tmp_path / "wf.yml"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    path.write_text(WORKFLOW.format(cache=tmp_path / "runner-cache", python=python))
    return path


def _run(workflow: Path, state: Path, job: str, **matrix: str) -> int:
    return workflow_steps.run(job, matrix, state, "push", 1, {}, workflow)


def test_a_leg_runs_its_steps_under_their_conditions_and_keeps_cache_and_artifacts(workflow: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert _run(workflow, state, "legs", suite="functional") == 0
    ws = state / "workspace" / "legs-functional"
    assert (ws / "results/run1/summary.json").read_text() == "restored: none\n"
    assert (ws / "results/run1/ran-after-failure").exists()
    assert (ws / "results/run1/leg").read_text() == "functional\n"  # GITHUB_ENV carried to the next step
    assert (state / "tmp/legs-functional/github_step_summary").read_text() == "## functional\n"
    artifact = state / "artifacts" / "results-functional-1"
    assert sorted(p.relative_to(artifact).as_posix() for p in artifact.rglob("*") if p.is_file()) == ["run1/leg", "run1/summary.json"]
    assert len(list((state / "cache").glob("k-functional-*.tar"))) == 1

    # The failing leg: later steps skipped unless always(), the cache saved and the results uploaded anyway.
    assert _run(workflow, state, "legs", suite="bench") == 1
    ws = state / "workspace" / "legs-bench"
    assert not (ws / "results/run1/ran-after-failure").exists() and (ws / "results/run1/leg").read_text() == "bench\n"
    assert (state / "artifacts" / "results-bench-1" / "run1/leg").read_text() == "bench\n"
    assert len(list((state / "cache").glob("k-bench-*.tar"))) == 1
    assert json.loads((state / "jobs.json").read_text())["legs"] == {"result": "failure"}

    # The report runs after a failed leg and merges every leg's artifact.
    assert _run(workflow, state, "report") == 0
    assert (state / "workspace/report/merged.txt").read_text() == "bench functional "
    # setup-python's stand-in put a fresh environment first on PATH.
    assert (
        Path((state / "workspace/report/python-prefix.txt").read_text().strip())
        == state / f"python-{sys.version_info.major}.{sys.version_info.minor}"
    )


def test_a_second_run_restores_the_cache_by_its_key(workflow: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert _run(workflow, state, "legs", suite="functional") == 0
    (tmp_path / "runner-cache" / "warm").unlink()  # a new runner: the cache directory is empty
    assert workflow_steps.run("legs", {"suite": "functional"}, state, "push", 2, {}, workflow) == 0
    assert (state / "workspace/legs-functional/results/run1/summary.json").read_text() == "restored: warm\n"
    # Inputs changed: the primary key misses, restore-keys find the older cache, which is no hit, so a new one is saved.
    (state / "workspace/legs-functional/inputs").mkdir()
    (state / "workspace/legs-functional/inputs/lock").write_text("new pin\n")
    (tmp_path / "runner-cache" / "warm").unlink()
    assert workflow_steps.run("legs", {"suite": "functional"}, state, "push", 3, {}, workflow) == 0
    assert (state / "workspace/legs-functional/results/run1/summary.json").read_text() == "restored: warm\n"
    assert len(list((state / "cache").glob("k-functional-*.tar"))) == 2


def test_a_leg_that_is_not_one_and_an_unknown_step_are_errors(workflow: Path, tmp_path: Path) -> None:
    with pytest.raises(LabError, match="does not name one leg"):
        _run(workflow, tmp_path / "s", "legs", suite="stress")
    with pytest.raises(LabError, match="names no step"):
        workflow_steps.run("legs", {"suite": "bench"}, tmp_path / "s", "push", 1, {"Wrok": "true"}, workflow)
    with pytest.raises(LabError, match="no job 'lint'"):
        _run(workflow, tmp_path / "s", "lint")


def test_the_real_workflow_is_understood(tmp_path: Path) -> None:
    """Every job, leg, condition and action of lab.yml is one the stand-ins know."""
    wf = workflow_steps.load()
    assert workflow_steps.dispatch_inputs(wf)["test"] == "pvsched_boost_sets_vcpu_thread_fifo"
    assert len(workflow_steps.matrix_legs(wf["jobs"]["lab"])) == 6
    for spec in wf["jobs"].values():
        for step in spec["steps"]:
            if "uses" in step:
                assert step["uses"].partition("@")[0] in workflow_steps.StepRunner.ACTIONS
    assert workflow_steps.artifact_root(["results/*/summary.json", "results/*/logs/"]) == "results"
    assert workflow_steps.artifact_root(["results/unit-junit.xml"]) == "results"
    assert workflow_steps.artifact_root(["merged/"]) == "merged"


def test_every_expression_of_the_real_workflow_evaluates_on_every_leg(tmp_path: Path) -> None:
    """The evaluator fails closed, so an expression lab.yml uses that it cannot read fails here, not on a runner."""
    from lab.runner import Runner
    from lab.workflow_expr import condition, expand

    wf = workflow_steps.load()
    evaluated = 0
    for name, spec in wf["jobs"].items():
        for leg in workflow_steps.matrix_legs(spec):
            github = {"event_name": "push", "run_attempt": "1", "ref": "refs/heads/main", "workflow": "lab"}
            job = workflow_steps.Job(name, spec, leg, tmp_path, Runner(tmp_path / "logs"), github,
                                     workflow_steps.dispatch_inputs(wf), {"lab": {"result": "success"}}, {})  # fmt: skip
            ctx = job.context()
            if "if" in spec:
                condition(spec["if"], ctx)
            texts = [str(v) for v in (wf.get("env") or {}).values()]
            for step in spec["steps"]:
                if "if" in step:
                    condition(step["if"], ctx)
                texts += [str(step.get("name", "")), str(step.get("run", ""))]
                texts += [str(v) for v in (step.get("with") or {}).values()] + [str(v) for v in (step.get("env") or {}).values()]
            for text in texts:
                expand(text, ctx)
                evaluated += 1
    assert evaluated > 50
