"""Planted defects: is each one caught by the lab as it runs for users?

tests/mutants/catalogue.toml lists small, realistic defects, each a patch
against kernel/patches/, guest/ or bpf/ with the checks expected to catch
it. For each, the lab's tree is copied, the patch applied, and the real lab
run on the copy (`python -m lab run`, the normal retry policy), so the
shared caches make each step an incremental build. A mutant is killed when
that run does not pass, unless the run lost its level-2 guest and the
mutant is not expected to: its checks then failed for want of data, which
says nothing of the mutant (inconclusive, run it again). The unmodified
tree runs first, the same way: a kill table is worth something only beside
a green control.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import attempts, ui
from lab.errors import LabError
from lab.paths import REPO, RESULTS_DIR
from lab.runner import Runner

CATALOGUE = REPO / "tests/mutants/catalogue.toml"
CONTROL = "unmodified"
# The check that fails when a level-2 guest is lost (crashed, reset, hung).
GUEST_LOST = "level2_boots"
# The splat checks, one per level (`no_splats_level1`).
SPLAT_CHECK = "no_splats_"
# What a copy of the lab needs; not its results, virtualenvs or git objects.
_NOT_COPIED = shutil.ignore_patterns(".git", ".nox", "results", "__pycache__", "*.egg-info", ".mypy_cache", ".ruff_cache")


@dataclass(frozen=True)
class Mutant:
    name: str
    covers: str
    what: str
    expect: list[str]
    patch: Path | None  # None: the unmodified tree
    flaky: bool = False
    args: tuple[str, ...] = ()  # its own arguments to `lab run` (a defect only the debug profile sees)
    # The defect itself may take the guest down (the host writing where the guest did not ask):
    # a lost guest does not make its run inconclusive; its other expected checks still must fail.
    loses_guest: bool = False


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # the lab's summary status, or "no summary"
    failed: list[str] = field(default_factory=list)  # checks that failed, the failed step
    minutes: float = 0.0
    run_dir: str = ""
    reruns: int = 0
    our_splats: list[str] = field(default_factory=list)  # levels with a splat whose trace names the series' code

    @property
    def guest_lost(self) -> bool:
        """The run lost a level-2 guest the mutant is not expected to lose: every check failed for
        want of data. Not so when an expected splat check failed on a splat of our code: an oops in a
        vCPU thread (in the MSR write, say) takes its guest with it, and the emulator is not in it."""
        ours = any(name.startswith(SPLAT_CHECK) for name in self.expected_seen)  # seen only on a splat of ours
        expected = GUEST_LOST in self.mutant.expect or self.mutant.loses_guest
        return GUEST_LOST in self.failed and not expected and not ours

    @property
    def inconclusive(self) -> bool:
        """The run failed, but not as the mutant's checks would: a lost guest,
        or only checks that do not look at what it breaks (the kexec guest lost
        to the emulator in mutants-20261204T164808Z was counted as a kill)."""
        return self.status != "passed" and (self.guest_lost or not self.expected_seen)

    @property
    def killed(self) -> bool:
        return self.status != "passed" and not self.inconclusive

    @property
    def expected_seen(self) -> list[str]:
        """The expected checks that failed; a splat check only on a splat whose report names the
        series' code (the emulator's oops would fail it too, and kill nothing)."""
        return [name for name in self.mutant.expect if name in self.failed and self._splat_of_ours_if_splat_check(name)]

    def _splat_of_ours_if_splat_check(self, name: str) -> bool:
        return not name.startswith(SPLAT_CHECK) or name.removeprefix(SPLAT_CHECK) in self.our_splats

    def to_dict(self) -> dict[str, Any]:
        return {"mutant": self.mutant.name, "covers": self.mutant.covers, "flaky": self.mutant.flaky,
                "expect": self.mutant.expect, "status": self.status, "killed": self.killed, "inconclusive": self.inconclusive,
                "expected_failed": self.expected_seen, "failed": self.failed, "reruns": self.reruns,
                "minutes": self.minutes, "run_dir": self.run_dir}  # fmt: skip


def load_catalogue(path: Path = CATALOGUE) -> list[Mutant]:
    data = tomllib.loads(path.read_text())
    mutants = []
    for entry in data["mutant"]:
        patch = path.parent / f"{entry['name']}.patch"
        if not patch.exists():
            raise LabError(f"mutant {entry['name']} has no patch {patch}", fix="add the patch or drop the entry")
        mutants.append(Mutant(entry["name"], entry["covers"], entry["what"], list(entry["expect"]), patch, bool(entry.get("flaky")),
                              tuple(entry.get("args", ())), bool(entry.get("loses_guest"))))  # fmt: skip
    return mutants


def outcome_of(mutant: Mutant, summary: dict[str, Any] | None, minutes: float, run_dir: str) -> Outcome:
    """The verdict of one lab run on a mutant, from its summary.json."""
    if summary is None:
        return Outcome(mutant, "no summary", ["the lab wrote no summary.json"], minutes, run_dir)
    failed = [c["name"] for c in summary["tests"]["cases"] if c["status"] == "failed" and not c.get("attempt")]
    if summary.get("failed_step"):
        failed.append(f"step {summary['failed_step']['step']}")
    return Outcome(mutant, summary["status"], failed, minutes, run_dir, int(summary.get("reruns", 0)),
                   splats_of_ours(summary, Path(run_dir)) if run_dir else [])  # fmt: skip


def splats_of_ours(summary: dict[str, Any], run_dir: Path) -> list[str]:
    """The levels with a splat of the run's last attempt whose report names the series' code (lab.attempts)."""
    levels: set[str] = set()
    logs: dict[str, list[str]] = {}  # each log read once, however many splats it holds
    for splat in summary.get("splats") or []:
        source = str(splat.get("source", ""))
        if source not in logs:
            try:
                logs[source] = (run_dir / source).read_text(errors="replace").splitlines() if source else []
            except OSError:
                logs[source] = []
        if logs[source] and attempts.our_frame(logs[source], int(splat.get("line_no", 0))):
            levels.add(str(splat.get("level")))
    return sorted(levels)


def kill_table(outcomes: list[Outcome]) -> str:
    lines = ["| mutant | covers | expected to fail | observed verdict | killed | minutes |", "| --- | --- | --- | --- | --- | --- |"]
    for o in outcomes:
        seen = ", ".join(o.expected_seen) or "none of them"
        others = [f for f in o.failed if f not in o.expected_seen]
        verdict = f"{o.status}; expected failed: {seen}" + (f"; also: {', '.join(others[:4])}" if others else "")
        if o.reruns:
            verdict += f"; {o.reruns} rerun(s)"
        if o.mutant.patch is None:
            killed = "control"
        elif o.inconclusive:
            killed = "inconclusive (guest lost)" if o.guest_lost else "inconclusive (not by its checks)"
        else:
            killed = ("yes" if o.killed else "**no**") + (" (its guest lost, as it may be)" if o.killed and GUEST_LOST in o.failed else "")
        name = o.mutant.name + (" (flaky)" if o.mutant.flaky else "") + (f" (`{' '.join(o.mutant.args)}`)" if o.mutant.args else "")
        lines.append(f"| {name} | {o.mutant.covers} | {', '.join(o.mutant.expect)} | {verdict} | {killed} | {o.minutes:.1f} |")
    mutants = [o for o in outcomes if o.mutant.patch is not None]
    control = next((o for o in outcomes if o.mutant.patch is None), None)
    lines += ["", f"{sum(o.killed for o in mutants)} of {len(mutants)} mutants killed"
              + (f"; the unmodified tree {control.status}" if control else "; no control run")]  # fmt: skip
    return "\n".join(lines) + "\n"


def plant(runner: Runner, mutant: Mutant, scratch: Path) -> None:
    """Apply the mutant's patch to the copy, and check that it is there."""
    if mutant.patch is None:
        return
    # A repository of its own: git apply in a directory inside another
    # repository skips the paths outside it, silently (it did, here).
    runner.run(["git", "init", "-q"], f"scratch repository for {mutant.name}", cwd=scratch)
    runner.run(["git", "apply", "--verbose", str(mutant.patch)], f"plant {mutant.name}", cwd=scratch)
    planted = runner.run(["git", "apply", "--check", "--reverse", str(mutant.patch)], f"check {mutant.name} is planted",
                         cwd=scratch, check=False)  # fmt: skip
    if not planted.ok:
        raise LabError(f"mutant {mutant.name} is not in the copy {scratch}: {planted.output.strip()[-300:]}", log=str(planted.log))


def run_one(runner: Runner, mutant: Mutant, scratch: Path, lab_args: list[str]) -> Outcome:
    """Copy the lab, plant the mutant, run the lab on the copy."""
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(REPO, scratch, ignore=_NOT_COPIED)
    plant(runner, mutant, scratch)
    start = time.monotonic()
    # The copy's own lab package: `-m` puts the working directory first on sys.path.
    runner.run([sys.executable, "-m", "lab", "run", *lab_args, *mutant.args], f"lab run on {mutant.name}", cwd=scratch, check=False)
    minutes = round((time.monotonic() - start) / 60, 1)
    latest = scratch / "results" / "latest"
    summary_path = latest / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return outcome_of(mutant, summary, minutes, str(latest.resolve()) if latest.exists() else "")


def run(only: list[str], lab_args: list[str], control: bool = True) -> int:
    """Run the control and every mutant (or `only` those); writes kill-table.md and mutants.json."""
    mutants = load_catalogue()
    if only:
        unknown = sorted(set(only) - {m.name for m in mutants})
        if unknown:
            raise LabError(f"no such mutant: {', '.join(unknown)}", fix=f"choose from {', '.join(m.name for m in mutants)}")
        mutants = [m for m in mutants if m.name in only]
    plan = ([Mutant(CONTROL, "the unmodified tree", "nothing planted", [], None)] if control else []) + mutants
    out = RESULTS_DIR / f"mutants-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    runner = Runner(out / "logs")
    outcomes: list[Outcome] = []
    for i, mutant in enumerate(plan, 1):
        ui.info(f"mutant {i}/{len(plan)}: {mutant.name} ({mutant.what})")
        outcome = run_one(runner, mutant, out / "scratch" / mutant.name, lab_args)
        outcomes.append(outcome)
        said = "killed" if outcome.killed else "inconclusive" if outcome.inconclusive else "NOT killed"
        ui.info(f"mutant {mutant.name}: {outcome.status}, {said}, "
                f"failed {outcome.failed[:5]}, {outcome.minutes} min")  # fmt: skip
        # Written after each mutant: a long run interrupted keeps what it measured.
        (out / "mutants.json").write_text(json.dumps([o.to_dict() for o in outcomes], indent=2) + "\n")
        (out / "kill-table.md").write_text(kill_table(outcomes))
        shutil.rmtree(out / "scratch" / mutant.name / ".nox", ignore_errors=True)
    print(kill_table(outcomes), flush=True)
    survivors = [o.mutant.name for o in outcomes if o.mutant.patch is not None and not o.killed]  # inconclusive ones too
    control_bad = [o for o in outcomes if o.mutant.patch is None and o.status != "passed"]
    print(f"mutants: {len(outcomes) - len(survivors) - (1 if control else 0)} killed, {len(survivors)} survived"
          + (f" ({', '.join(survivors)})" if survivors else "") + ("; CONTROL FAILED" if control_bad else "")
          + f"; {out / 'kill-table.md'}", flush=True)  # fmt: skip
    return 1 if survivors or control_bad else 0
