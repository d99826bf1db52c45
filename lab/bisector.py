"""Bisect: `git bisect run` with the lab's build + boot + test as the predicate.

The commits come from a git tree: by default the lab's patched source tree
(the pinned base plus one commit per patch of kernel/patches/), or a user's
kernel tree given by path.  The bisect itself runs in a `--shared` clone under
the cache (without a checkout), so neither tree is touched and the bisect state (git's own
BISECT_* files plus our state.json and steps.jsonl) survives an interruption:
running the same command again resumes where it stopped.

Exit codes of the predicate follow `git bisect run`: 0 good, 1 bad, 125 skip
(the commit does not build or its config cannot be met).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.runner import Runner

GOOD, BAD, SKIP = 0, 1, 125
METRIC = re.compile(r"^(?P<mode>[a-z][a-z-]*)\.(?P<side>guest|host)\.(?P<stat>avg_us|p50_us|p99_us|max_us)$")
FIRST_BAD = re.compile(r"^([0-9a-f]{40}) is the first bad commit$", re.M)
ONLY_SKIPPED = "There are only 'skip'ped commits left to test."


@dataclass
class Criterion:
    """What makes a commit bad: a named test failing, or a bench metric over a threshold."""

    test: str | None = None
    bench: str | None = None
    threshold: float | None = None
    duration: int = 10  # seconds of cyclictest for --bench

    def __post_init__(self) -> None:
        if (self.test is None) == (self.bench is None):
            raise LabError(
                "bisect needs exactly one of --test NAME or --bench METRIC", fix="e.g. --test pvsched_boost_sets_vcpu_thread_fifo"
            )
        if self.bench is not None:
            if not METRIC.match(self.bench):
                raise LabError(
                    f"bench metric {self.bench!r} is not MODE.SIDE.STAT",
                    fix="e.g. --bench idle.guest.avg_us (SIDE guest|host, STAT avg_us|p50_us|p99_us|max_us)",
                )
            if self.threshold is None:
                raise LabError("--bench needs --threshold", fix="pass the value above which a commit is bad, e.g. --threshold 1500")

    def describe(self) -> str:
        if self.test:
            return f"test {self.test} fails"
        return f"bench {self.bench} > {self.threshold:g}"

    def bench_parts(self) -> tuple[str, str, str]:
        m = METRIC.match(self.bench or "")
        assert m is not None
        return m["mode"], m["side"], m["stat"]

    def judge_bench(self, bench: dict[str, Any]) -> tuple[int | None, float | None]:
        """(GOOD|BAD, value), or (None, None) when the metric was not measured."""
        mode, side, stat = self.bench_parts()
        value = (((bench.get("modes") or {}).get(mode) or {}).get(side) or {}).get(stat)
        if value is None:
            return None, None
        assert self.threshold is not None
        return (BAD if float(value) > self.threshold else GOOD), float(value)

    def judge_tests(self, cases: list[dict[str, Any]]) -> int | None:
        """GOOD|BAD from the named test's status, or None when it did not run."""
        for case in cases:
            if case["name"] == self.test:
                return {"passed": GOOD, "failed": BAD}.get(case["status"])
        return None


@dataclass
class BisectState:
    tree: str  # the tree the commits come from
    good: str
    bad: str
    criterion: Criterion
    retries: int = 1
    profile: str = "default"
    started: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BisectState:
        return cls(**{**data, "criterion": Criterion(**data["criterion"])})


def state_id(tree: Path, good: str, bad: str, criterion: Criterion) -> str:
    """Same tree, endpoints and criterion -> same state directory, so a rerun resumes."""
    text = json.dumps([str(tree.resolve()), good, bad, asdict(criterion)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def combine(verdicts: list[int | None]) -> int:
    """One verdict from a commit's attempts: a flaky failure does not make it bad.

    An attempt is GOOD, BAD, SKIP (does not build) or None (could not judge,
    e.g. the VM did not boot).  Good if any attempt was good, else bad if any
    was bad, else skip.
    """
    if GOOD in verdicts:
        return GOOD
    if BAD in verdicts:
        return BAD  # every attempt that could judge said bad
    return SKIP


def attempts_needed(verdicts: list[int | None], retries: int) -> bool:
    """Whether to try the commit again: only while nothing judged it good."""
    return GOOD not in verdicts and SKIP not in verdicts and len(verdicts) < retries + 1


@dataclass
class BisectResult:
    first_bad: str | None
    candidates: list[str]
    log: str
    steps: list[dict[str, Any]]


def parse_outcome(output: str) -> tuple[str | None, list[str]]:
    """(first bad commit, []) or (None, candidates when only skipped commits were left)."""
    if m := FIRST_BAD.search(output):
        return m[1], []
    if ONLY_SKIPPED in output:
        tail = output.split(ONLY_SKIPPED, 1)[1]
        return None, re.findall(r"^([0-9a-f]{40})\b", tail, re.M)
    return None, []


class Bisector:
    """Owns one bisect's state directory: the clone, state.json, steps.jsonl, result.json."""

    def __init__(self, runner: Runner, state_dir: Path) -> None:
        self.runner = runner
        self.dir = state_dir
        self.src = state_dir / "src"

    def git(self, args: list[str], label: str, check: bool = True) -> str:
        return self.runner.run(["git", "-C", str(self.src), *args], label, check=check).output.strip()

    def in_progress(self) -> bool:
        return (self.src / ".git" / "BISECT_START").exists()

    def start(self, state: BisectState) -> None:
        """Clone the tree and `git bisect start`, or resume the bisect already there."""
        if self.in_progress():
            done = sum(1 for _ in self.steps())
            print(f"bisect: resuming in {self.src} ({done} steps already judged)", flush=True)
            return
        tree = Path(state.tree)
        good = resolve(self.runner, tree, state.good)
        bad = resolve(self.runner, tree, state.bad)
        if self.src.exists():
            shutil.rmtree(self.src)  # a clone whose bisect never started
        self.dir.mkdir(parents=True, exist_ok=True)
        state.extra.update({"good_sha": good, "bad_sha": bad})
        (self.dir / "state.json").write_text(json.dumps(state.to_json(), indent=2) + "\n")
        self.runner.run(["git", "clone", "-q", "--shared", "--no-checkout", str(tree), str(self.src)], "clone tree for bisect")
        self.git(["config", "gc.auto", "0"], "git config gc.auto")
        # --no-checkout: the commit under test is BISECT_HEAD; the step builds it
        # in the lab's own source tree (one checkout, incremental builds).
        self.git(["bisect", "start", "--no-checkout", bad, good], "git bisect start")

    def run(self, predicate: list[str]) -> BisectResult:
        """`git bisect run PREDICATE` to the end; the result is also written to result.json."""
        result = self.runner.run(
            ["git", "-C", str(self.src), "bisect", "run", *predicate],
            "git bisect run",
            check=False,
            on_line=lambda line: print(f"  bisect: {line}", flush=True) if _interesting(line) else None,
        )
        first_bad, candidates = parse_outcome(result.output)
        log = self.git(["bisect", "log"], "git bisect log", check=False)
        if first_bad is None and not candidates:
            raise LabError(
                f"git bisect run stopped without a result (exit {result.returncode})",
                fix=f"read {result.log}; rerun the same command to resume, or remove {self.dir} to start over",
                log=str(result.log),
            )
        outcome = BisectResult(first_bad, candidates, log, list(self.steps()))
        (self.dir / "result.json").write_text(
            json.dumps({"first_bad": first_bad, "candidates": candidates, "bisect_log": log, "steps": outcome.steps}, indent=2) + "\n"
        )
        return outcome

    def steps(self) -> list[dict[str, Any]]:
        path = self.dir / "steps.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def record_step(self, step: dict[str, Any]) -> None:
        with (self.dir / "steps.jsonl").open("a") as f:
            f.write(json.dumps(step) + "\n")


def _interesting(line: str) -> bool:
    return line.startswith(("running", "Bisecting:", "bisect:")) or "first bad commit" in line or line.startswith("[")


def resolve(runner: Runner, tree: Path, ref: str) -> str:
    result = runner.run(["git", "-C", str(tree), "rev-parse", "--verify", "-q", f"{ref}^{{commit}}"], f"resolve {ref}", check=False)
    if not result.ok:
        raise LabError(f"{ref!r} is not a commit in {tree}", fix=f"list candidates with `git -C {tree} log --oneline`")
    return result.output.strip()


def step_record(commit: str, subject: str, attempts: list[dict[str, Any]], verdict: int, seconds: float) -> dict[str, Any]:
    return {
        "commit": commit,
        "subject": subject,
        "verdict": {GOOD: "good", BAD: "bad", SKIP: "skip"}[verdict],
        "attempts": attempts,
        "seconds": round(seconds, 1),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


STEP_REF = "refs/lab/bisect-step"


def pin_step_commit(runner: Runner, src: Path, commit: str = "BISECT_HEAD") -> str:
    """Name the commit under test (BISECT_HEAD) by a real ref, which the source manager can fetch."""
    runner.run(["git", "-C", str(src), "update-ref", STEP_REF, commit], "pin bisect commit")
    return runner.run(["git", "-C", str(src), "rev-parse", STEP_REF], "resolve bisect commit").output.strip()


def predicate_argv(state_dir: Path) -> list[str]:
    return [sys.executable, "-m", "lab", "bisect-step", "--state", str(state_dir)]
