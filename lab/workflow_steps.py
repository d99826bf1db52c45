"""`python -m lab workflow-steps`: one job of .github/workflows/lab.yml run
here, step by step, as a GitHub runner would, so its shell steps and the
cache and artifact steps are exercised before the first push.

Each `run:` step goes through the lab's runner (logged with its command
line) as GitHub runs it (`bash --noprofile --norc -eo pipefail`, the job's
environment, `GITHUB_STEP_SUMMARY`, `GITHUB_ENV`, `GITHUB_OUTPUT`), under
its `if:` (lab.workflow_expr). The actions the workflow uses are stood in
for, each by what it does to the runner: checkout (a clone of this
repository at HEAD), setup-python (a virtual environment on PATH, the
Python asked for), cache/restore and cache/save (tar files under the state
directory, keyed as GitHub keys them, restore-keys by prefix), upload- and
download-artifact (directories under the state directory). Any other
action is an error. A step this machine cannot run as written (the image
from a registry here) is replaced only by `--replace`, said in the log.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab import ui
from lab.errors import LabError
from lab.paths import REPO
from lab.runner import Runner
from lab.workflow_expr import Context, condition, expand

WORKFLOW = REPO / ".github/workflows/lab.yml"
SHELL = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]  # GitHub's `shell: bash`
GLOB_CHARS = "*?["


@dataclass
class StepResult:
    name: str
    outcome: str  # success, failure, skipped
    note: str = ""


@dataclass
class Job:
    """One job of the workflow on one matrix leg, with the state it keeps between steps."""

    name: str
    spec: dict[str, Any]
    matrix: dict[str, str]
    state: Path
    runner: Runner
    github: dict[str, Any]
    inputs: dict[str, str]
    needs: dict[str, dict[str, str]]
    replace: dict[str, str]
    variables: dict[str, str] = field(default_factory=dict)
    workflow_env: dict[str, Any] = field(default_factory=dict)  # the workflow's `env:`, under the job's
    env: dict[str, str] = field(default_factory=dict)
    path_prefix: list[str] = field(default_factory=list)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: list[StepResult] = field(default_factory=list)

    @property
    def workspace(self) -> Path:
        """A leg's own work directory, as each leg gets a runner of its own."""
        return self.state / "workspace" / "-".join([self.name, *self.matrix.values()])

    @property
    def temp(self) -> Path:
        """RUNNER_TEMP of the leg, with its step summary and env files."""
        return self.state / "tmp" / self.workspace.name

    @property
    def failed(self) -> bool:
        return any(r.outcome == "failure" for r in self.results)

    def context(self, step_env: Mapping[str, str] | None = None) -> Context:
        contexts = {
            "github": self.github,
            "env": {**self.env, **(step_env or {})},
            "matrix": self.matrix,
            "inputs": self.inputs,
            "steps": self.steps,
            "needs": self.needs,
            "vars": self.variables,  # repository variables: none here, and an unset one reads as ''
            "runner": {"os": "Linux", "temp": str(self.temp)},
        }
        return Context(contexts, self.workspace, self.failed)


def load(path: Path = WORKFLOW) -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return {str(k): v for k, v in data.items()}


def dispatch_inputs(workflow: dict[str, Any]) -> dict[str, str]:
    """workflow_dispatch's inputs at their defaults."""
    spec = (workflow.get("on") or {}).get("workflow_dispatch") or {}
    return {k: str(v.get("default", "")) for k, v in (spec.get("inputs") or {}).items()}


def matrix_legs(spec: dict[str, Any]) -> list[dict[str, str]]:
    """Every leg of a job's matrix (one empty leg without a matrix)."""
    matrix = ((spec.get("strategy") or {}).get("matrix")) or {}
    legs: list[dict[str, str]] = [{}]
    for key, values in matrix.items():
        if key in ("include", "exclude"):
            raise LabError(f"matrix {key} is not supported by workflow-steps", fix="extend lab/workflow_steps.py")
        legs = [{**leg, key: str(v)} for leg in legs for v in values]
    return legs


def pick_leg(spec: dict[str, Any], wanted: dict[str, str]) -> dict[str, str]:
    legs = matrix_legs(spec)
    chosen = [leg for leg in legs if all(leg.get(k) == v for k, v in wanted.items())]
    if len(chosen) != 1 or any(k not in legs[0] for k in wanted):
        raise LabError(
            f"--matrix {wanted} does not name one leg of {legs}",
            fix="name a value for every matrix key, e.g. --matrix suite=functional,profile=default",
        )
    return chosen[0]


def artifact_root(patterns: list[str]) -> str:
    """The least common ancestor of the patterns' fixed parts (upload-artifact's root)."""
    fixed = []
    for pat in patterns:
        parts = []
        for part in Path(pat).parts:
            if any(c in part for c in GLOB_CHARS):
                break
            parts.append(part)
        is_file = len(parts) == len(Path(pat).parts) and not pat.endswith("/")
        fixed.append(Path(*parts).parent if is_file else Path(*parts) if parts else Path("."))
    return os.path.commonpath([str(p) for p in fixed]) if fixed else "."


def _lines(value: Any) -> list[str]:
    return [line.strip() for line in str(value or "").splitlines() if line.strip()]


class StepRunner:
    """Runs one job's steps in order, as the runner would."""

    # The actions stood in for, by the method that does what each does to the runner.
    ACTIONS = {
        "actions/checkout": "checkout",
        "actions/setup-python": "setup_python",
        "actions/cache/restore": "cache_restore",
        "actions/cache/save": "cache_save",
        "actions/upload-artifact": "upload",
        "actions/download-artifact": "download",
    }

    def __init__(self, job: Job) -> None:
        self.job = job
        self.actions: dict[str, Callable[[dict[str, str], str], dict[str, str]]] = {
            action: getattr(self, method) for action, method in self.ACTIONS.items()
        }

    def run(self) -> bool:
        job = self.job
        tmp = job.temp
        tmp.mkdir(parents=True, exist_ok=True)
        job.workspace.mkdir(parents=True, exist_ok=True)  # the runner's work directory, before any checkout
        job.github["workspace"] = str(job.workspace)
        base_ctx = job.context()
        for name, value in {**job.workflow_env, **(job.spec.get("env") or {})}.items():
            job.env[name] = expand(str(value), base_ctx)
        for number, step in enumerate(job.spec.get("steps") or [], 1):
            self.step(number, step)
        return not job.failed

    def step(self, number: int, step: dict[str, Any]) -> None:
        job = self.job
        name = step.get("name") or step.get("uses") or f"step {number}"
        step_env = {k: expand(str(v), job.context()) for k, v in (step.get("env") or {}).items()}
        ctx = job.context(step_env)
        name = expand(str(name), ctx)
        if not condition(step.get("if"), ctx):
            job.results.append(StepResult(name, "skipped"))
            ui.info(f"workflow-steps: {name}: skipped (if: {step.get('if', 'success()')})")
            self._record(step, "skipped", {})
            return
        ui.info(f"workflow-steps: {name} ...")
        outputs: dict[str, str] = {}
        if "uses" in step:
            action, _, _ = str(step["uses"]).partition("@")
            if action not in self.actions:
                raise LabError(f"workflow-steps has no stand-in for the action {step['uses']}", fix="extend lab/workflow_steps.py")
            inputs = {k: expand(str(v), ctx) for k, v in (step.get("with") or {}).items()}
            try:
                outputs = self.actions[action](inputs, name)
                outcome, note = "success", ""
            except LabError as exc:
                outcome, note = "failure", exc.message
        else:
            raw_name = str(step.get("name", ""))
            script = job.replace.get(raw_name, str(step["run"]))
            note = f"replaced on this machine by: {script}" if raw_name in job.replace else ""
            outcome, outputs = self.shell(number, name, expand(script, ctx), step_env)
        job.results.append(StepResult(name, outcome, note=note))
        self._record(step, outcome, outputs)
        said = f"workflow-steps: {name}: {outcome}{'; ' + note if note else ''}"
        if outcome == "success":
            ui.info(said)
        else:
            ui.failure("failed:", said)

    def _record(self, step: dict[str, Any], outcome: str, outputs: dict[str, str]) -> None:
        if "id" in step:
            self.job.steps[str(step["id"])] = {"outputs": outputs, "outcome": outcome, "conclusion": outcome}

    def _env(self, step_env: Mapping[str, str]) -> dict[str, str]:
        job = self.job
        files = {n: job.temp / n.lower() for n in ("GITHUB_STEP_SUMMARY", "GITHUB_ENV", "GITHUB_OUTPUT")}
        for f in (files["GITHUB_ENV"], files["GITHUB_OUTPUT"]):
            f.write_text("")
        path = os.pathsep.join([*job.path_prefix, os.environ.get("PATH", "")])
        return {
            **job.env,
            **step_env,
            **{k: str(v) for k, v in files.items()},
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(job.workspace),
            "GITHUB_RUN_ATTEMPT": str(job.github["run_attempt"]),
            "GITHUB_EVENT_NAME": str(job.github["event_name"]),
            "RUNNER_TEMP": str(job.temp),
            "PATH": path,
        }

    def shell(self, number: int, name: str, script: str, step_env: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        job = self.job
        env = self._env(step_env)
        script_file = job.temp / f"step-{number}.sh"  # kept: the log's reproduce line runs it
        script_file.write_text(script + "\n")
        result = job.runner.run([*SHELL, str(script_file)], name, cwd=job.workspace, env_extra=env, check=False)
        for line in Path(env["GITHUB_ENV"]).read_text().splitlines():
            key, sep, value = line.partition("=")
            if "<<" in key or not sep:
                raise LabError(f"{name}: GITHUB_ENV line {line!r} is not NAME=VALUE", fix="extend lab/workflow_steps.py")
            job.env[key] = value
        outputs = dict(line.partition("=")[::2] for line in Path(env["GITHUB_OUTPUT"]).read_text().splitlines() if "=" in line)
        return ("success" if result.returncode == 0 else "failure"), outputs

    # The actions' stand-ins: inputs as the step's `with:`, outputs as the action sets them.

    def checkout(self, inputs: dict[str, str], name: str) -> dict[str, str]:
        ws = self.job.workspace
        if ws.exists():
            shutil.rmtree(ws)
        ws.parent.mkdir(parents=True, exist_ok=True)
        self.job.runner.run(["git", "clone", "--quiet", "--no-local", str(REPO), str(ws)], name)
        return {}

    def setup_python(self, inputs: dict[str, str], name: str) -> dict[str, str]:
        wanted = inputs.get("python-version", "")
        have = f"{sys.version_info.major}.{sys.version_info.minor}"
        if wanted and wanted != have:
            raise LabError(
                f"{name}: the workflow asks for Python {wanted}, this lab runs {have}", fix=f"run workflow-steps with python{wanted}"
            )
        env_dir = self.job.state / f"python-{have}"
        if not (env_dir / "bin" / "python").exists():
            self.job.runner.run([sys.executable, "-m", "venv", "--clear", str(env_dir)], f"{name}: python {have}")
        self.job.path_prefix.insert(0, str(env_dir / "bin"))
        return {"python-version": have}

    def _cache_file(self, key: str) -> Path:
        return self.job.state / "cache" / f"{key}.tar"

    def cache_restore(self, inputs: dict[str, str], name: str) -> dict[str, str]:
        key = inputs["key"]
        matched = key if self._cache_file(key).exists() else ""
        if not matched:
            for prefix in _lines(inputs.get("restore-keys")):
                found = sorted(self._cache_file("x").parent.glob(f"{prefix}*.tar"), key=lambda p: p.stat().st_mtime)
                if found:
                    matched = found[-1].name.removesuffix(".tar")
                    break
        if matched:
            self.job.runner.run(["tar", "-C", "/", "-xf", str(self._cache_file(matched))], f"{name}: restore {matched}")
        return {"cache-hit": "true" if matched == key else "false", "cache-primary-key": key, "cache-matched-key": matched}

    def cache_save(self, inputs: dict[str, str], name: str) -> dict[str, str]:
        key = inputs["key"]
        target = self._cache_file(key)
        if target.exists():
            ui.failure("warning:", f"{name}: a cache with key {key} exists already; not saved (as GitHub)")
            return {}
        paths = [str(Path(p).resolve()).lstrip("/") for p in _lines(inputs.get("path")) if Path(p).exists()]
        if not paths:
            ui.failure("warning:", f"{name}: none of the paths exist; nothing saved (as GitHub)")
            return {}
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        self.job.runner.run(["tar", "-C", "/", "-cf", str(partial), *paths], f"{name}: save {key}")
        partial.rename(target)
        return {}

    def upload(self, inputs: dict[str, str], name: str) -> dict[str, str]:
        ws = self.job.workspace
        patterns = _lines(inputs["path"])
        root = ws / artifact_root(patterns)
        files = sorted(
            {f for pat in patterns for m in ws.glob(pat.rstrip("/")) for f in ([m] if m.is_file() else m.rglob("*")) if f.is_file()}
        )
        if not files:
            ui.failure("warning:", f"{name}: no files found for {patterns}; nothing uploaded (if-no-files-found: warn)")
            return {}
        dest = self.job.state / "artifacts" / inputs["name"]
        if dest.exists():
            raise LabError(f"{name}: an artifact named {inputs['name']} exists already in this run", fix="give each upload a unique name")
        for f in files:
            (dest / f.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest / f.relative_to(root))
        ui.info(f"workflow-steps: uploaded {len(files)} files as {inputs['name']}")
        return {"artifact-id": inputs["name"]}

    def download(self, inputs: dict[str, str], name: str) -> dict[str, str]:
        store = self.job.state / "artifacts"
        names = sorted(p.name for p in store.iterdir()) if store.exists() else []
        chosen = [n for n in names if fnmatch.fnmatchcase(n, inputs.get("pattern", "*"))]
        dest = self.job.workspace / inputs.get("path", ".")
        for artifact in chosen:
            shutil.copytree(store / artifact, dest / artifact, dirs_exist_ok=True)
        ui.info(f"workflow-steps: downloaded {chosen or 'no artifact'} into {dest}")
        return {"download-path": str(dest)}


def runner_tools(spec: dict[str, Any]) -> list[str]:
    """What a GitHub runner has that this job uses: the shell, git and tar for the stand-ins, sudo if a step calls it."""
    scripts = " ".join(str(step.get("run", "")) for step in spec.get("steps") or [])
    return ["bash", "git", "tar", *(["sudo"] if "sudo " in scripts else [])]


def run(
    job_name: str,
    wanted: dict[str, str],
    state: Path,
    event: str,
    attempt: int,
    replace: dict[str, str],
    workflow_file: Path = WORKFLOW,
) -> int:
    workflow = load(workflow_file)
    jobs = workflow.get("jobs") or {}
    if job_name not in jobs:
        raise LabError(f"no job {job_name!r} in {workflow_file.name}", fix=f"choose one of {', '.join(jobs)}")
    spec = jobs[job_name]
    for tool in runner_tools(spec):
        if shutil.which(tool) is None:
            raise LabError(f"a GitHub runner has {tool}; this machine does not", fix=f"apt-get install {tool}")
    unknown = sorted(set(replace) - {str(step.get("name", "")) for step in spec.get("steps") or []})
    if unknown:
        raise LabError(f"--replace names no step of job {job_name}: {unknown}", fix="use the step's name: as the workflow spells it")
    results_file = state / "jobs.json"
    done: dict[str, dict[str, str]] = json.loads(results_file.read_text()) if results_file.exists() else {}
    github = {"event_name": event, "run_attempt": str(attempt), "ref": "refs/heads/main", "workflow": workflow.get("name", "")}
    state.mkdir(parents=True, exist_ok=True)
    job = Job(job_name, spec, pick_leg(spec, wanted), state, Runner(state / "logs" / job_name), github, dispatch_inputs(workflow),
              {n: done.get(n, {"result": "skipped"}) for n in _needs(spec)}, replace,
              workflow_env=workflow.get("env") or {})  # fmt: skip
    if "if" in spec and not condition(spec["if"], job.context()):
        ui.info(f"workflow-steps: job {job_name} skipped (if: {spec['if']})")
        return 0
    missing = [n for n in _needs(spec) if n not in done]
    if missing:
        ui.failure("warning:", f"workflow-steps: job {job_name} needs {missing}, not run in {state}: they read as skipped")
    ok = StepRunner(job).run()
    done[job_name] = {"result": "success" if ok else "failure"}
    results_file.write_text(json.dumps(done, indent=2) + "\n")
    width = max((len(r.name) for r in job.results), default=10)
    for r in job.results:
        print(f"  {r.name:<{width}}  {r.outcome}{'  (' + r.note + ')' if r.note else ''}")
    leg = json.dumps(job.matrix) if job.matrix else ""
    print(f"workflow-steps: job {job_name} {leg}: {done[job_name]['result']}; logs in {job.runner.log_dir}")
    return 0 if ok else 1


def _needs(spec: dict[str, Any]) -> list[str]:
    needs = spec.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)
