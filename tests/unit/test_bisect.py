"""Bisect driver: real `git bisect run` on a toy repository with a scripted predicate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.bisector import (
    BAD,
    GOOD,
    SKIP,
    Bisector,
    BisectState,
    Criterion,
    attempts_needed,
    combine,
    parse_outcome,
    state_id,
)
from lab.errors import LabError
from lab.runner import Runner

# Reads the commit under test (BISECT_HEAD, no checkout) and exits like a lab
# step: "bug" -> bad, "nobuild" -> skip, "abort-once" -> 128 the first time.
PREDICATE = r"""
import pathlib, subprocess, sys
src, marks = sys.argv[1], pathlib.Path(sys.argv[2])
text = subprocess.run(["git", "-C", src, "show", "BISECT_HEAD:state"], capture_output=True, text=True, check=True).stdout
with (marks / "calls").open("a") as f:
    f.write(text.strip() + "\n")
if "abort-once" in text and not (marks / "aborted").exists():
    (marks / "aborted").touch()
    sys.exit(128)
if "nobuild" in text:
    sys.exit(125)
sys.exit(1 if "bug" in text else 0)
"""


def make_repo(path: Path, states: list[str]) -> list[str]:
    """One commit per state; returns the commit ids."""
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    shas = []
    for i, state in enumerate(states):
        (path / "state").write_text(f"{state} #{i}\n")
        subprocess.run(["git", "-C", str(path), "add", "state"], check=True)
        subprocess.run(["git", "-C", str(path), "commit", "-q", "-m", f"c{i} {state}"], check=True, env={**env, "PATH": "/usr/bin:/bin"})
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        shas.append(out.stdout.strip())
    return shas


def bisect(tmp_path: Path, states: list[str], good: int = 0) -> tuple[Bisector, list[str], Path]:
    repo = tmp_path / "repo"
    shas = make_repo(repo, states)
    marks = tmp_path / "marks"
    marks.mkdir()
    crit = Criterion(test="toy")
    state_dir = tmp_path / "state" / state_id(repo, shas[good], shas[-1], crit)
    bisector = Bisector(Runner(state_dir / "git-logs"), state_dir)
    bisector.start(BisectState(str(repo), shas[good], shas[-1], crit))
    script = tmp_path / "pred.py"
    script.write_text(PREDICATE)
    return bisector, shas, marks


def predicate(bisector: Bisector, tmp_path: Path, marks: Path) -> list[str]:
    return [sys.executable, str(tmp_path / "pred.py"), str(bisector.src), str(marks)]


def test_finds_first_bad_commit(tmp_path: Path) -> None:
    states = ["ok"] * 5 + ["bug"] * 4
    bisector, shas, marks = bisect(tmp_path, states)
    result = bisector.run(predicate(bisector, tmp_path, marks))
    assert result.first_bad == shas[5]
    assert (bisector.dir / "result.json").exists()
    # log2(8) steps, not a linear scan
    assert len((marks / "calls").read_text().splitlines()) <= 4


def test_skipped_commit_next_to_the_bug_leaves_candidates(tmp_path: Path) -> None:
    states = ["ok", "ok", "ok", "nobuild bug", "bug", "bug"]
    bisector, shas, marks = bisect(tmp_path, states)
    result = bisector.run(predicate(bisector, tmp_path, marks))
    assert result.first_bad is None
    assert set(result.candidates) == {shas[3], shas[4]}


def test_skipped_commit_elsewhere_does_not_hide_the_answer(tmp_path: Path) -> None:
    states = ["ok", "nobuild", "ok", "ok", "bug", "bug", "bug"]
    bisector, shas, marks = bisect(tmp_path, states)
    assert bisector.run(predicate(bisector, tmp_path, marks)).first_bad == shas[4]


def test_interrupted_bisect_resumes(tmp_path: Path) -> None:
    states = ["ok", "ok", "ok", "ok abort-once", "bug", "bug", "bug", "bug"]
    bisector, shas, marks = bisect(tmp_path, states)
    with pytest.raises(LabError, match="without a result"):
        bisector.run(predicate(bisector, tmp_path, marks))
    assert bisector.in_progress()
    judged_before = (marks / "calls").read_text().split("\n")
    # A new process would build the same state directory and call start() again.
    again = Bisector(Runner(bisector.dir / "git-logs"), bisector.dir)
    again.start(BisectState.from_json(__import__("json").loads((bisector.dir / "state.json").read_text())))
    result = again.run(predicate(again, tmp_path, marks))
    assert result.first_bad == shas[4]
    # resumed at the interrupted commit instead of starting over
    calls = (marks / "calls").read_text().split("\n")
    assert calls[len(judged_before) - 1].startswith("ok abort-once")


def test_bad_ref_is_a_clear_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shas = make_repo(repo, ["ok", "bug"])
    bisector = Bisector(Runner(tmp_path / "s" / "logs"), tmp_path / "s")
    with pytest.raises(LabError, match="not a commit"):
        bisector.start(BisectState(str(repo), "no-such-ref", shas[1], Criterion(test="t")))


def test_flaky_failures_are_retried_before_they_count() -> None:
    assert attempts_needed([BAD], retries=2)
    assert attempts_needed([BAD, None], retries=2)
    assert not attempts_needed([BAD, BAD, BAD], retries=2)
    assert not attempts_needed([GOOD], retries=2)
    assert not attempts_needed([SKIP], retries=2)  # does not build: retrying will not help
    assert combine([BAD, GOOD]) == GOOD
    assert combine([BAD, BAD]) == BAD
    assert combine([None, BAD]) == BAD
    assert combine([None, None]) == SKIP
    assert combine([SKIP]) == SKIP


def test_criterion_validation_and_judging() -> None:
    with pytest.raises(LabError):
        Criterion()
    with pytest.raises(LabError):
        Criterion(test="a", bench="idle.guest.avg_us", threshold=1)
    with pytest.raises(LabError, match="MODE.SIDE.STAT"):
        Criterion(bench="idle.avg", threshold=1)
    with pytest.raises(LabError, match="--threshold"):
        Criterion(bench="idle.guest.avg_us")
    crit = Criterion(bench="pvsched.guest.p99_us", threshold=1000)
    bench = {"modes": {"pvsched": {"guest": {"p99_us": 1500}}}}
    assert crit.judge_bench(bench) == (BAD, 1500.0)
    assert crit.judge_bench({"modes": {"pvsched": {"guest": {"p99_us": 999}}}}) == (GOOD, 999.0)
    assert crit.judge_bench({"modes": {}}) == (None, None)
    # a mode whose guest could not be measured (seen: a guest stalled by the regression)
    assert crit.judge_bench({"modes": {"pvsched": {"guest": None, "host": {"p99_us": 5}}}}) == (None, None)
    t = Criterion(test="pvsched_x")
    assert t.judge_tests([{"name": "pvsched_x", "status": "failed"}]) == BAD
    assert t.judge_tests([{"name": "pvsched_x", "status": "passed"}]) == GOOD
    assert t.judge_tests([{"name": "other", "status": "failed"}]) is None


def test_parse_outcome() -> None:
    sha = "a" * 40
    assert parse_outcome(f"running x\n{sha} is the first bad commit\ncommit {sha}\n") == (sha, [])
    skipped = f"There are only 'skip'ped commits left to test.\nThe first bad commit could be any of:\n{sha}\n{'b' * 40}\n"
    assert parse_outcome(skipped) == (None, [sha, "b" * 40])
    assert parse_outcome("bisect run failed") == (None, [])
