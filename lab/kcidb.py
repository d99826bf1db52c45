"""`python -m lab kcidb DIR... -o FILE`: runs in KernelCI's KCIDB I/O format
(schema v5): one checkout per source head, one build per kernel of each run,
one test per check. Validate with `kcidb-io` (tests/unit/test_kcidb.py does)
before submitting with kcidb-submit."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lab.merge import load

ORIGIN = "pvsched_lab"
SCHEMA_VERSION = {"major": 5, "minor": 3}
STATUS = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}


def _id(*parts: str) -> str:
    return f"{ORIGIN}:" + "-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", p) for p in parts)


def export(runs: list[dict[str, Any]]) -> dict[str, Any]:
    checkouts: dict[str, dict[str, Any]] = {}
    builds, tests = [], []
    for run in runs:
        source = run.get("source") or {}
        checkout_id = _id(str(source.get("identity") or source.get("head") or "unknown"))
        # The series' patches are named, not linked: KCIDB wants a URL that downloads each file.
        checkout: dict[str, Any] = {"id": checkout_id, "origin": ORIGIN, "tree_name": "pvsched-lab", "valid": True,
                                    "misc": {"identity": source.get("identity"), "patches": source.get("patches", [])}}  # fmt: skip
        if re.fullmatch(r"[0-9a-f]{40}", str(source.get("base", ""))):
            checkout["git_commit_hash"] = source["base"]
        checkouts.setdefault(checkout_id, checkout)
        failed_step = (run.get("failed_step") or {}).get("step", "")
        for kernel, info in (run.get("build") or {}).items():
            if kernel not in ("host", "guest"):
                continue
            build_failed = failed_step in (f"config {kernel}", f"build {kernel}")
            builds.append({
                "id": _id(run["run_id"], kernel), "origin": ORIGIN, "checkout_id": checkout_id,
                "architecture": "x86_64", "config_name": f"{run.get('profile', 'default')}-{kernel}",
                "duration": float(info.get("seconds") or 0), "status": "FAIL" if build_failed else "PASS",
                "misc": {"cache": info.get("cache"), "key": info.get("key"), "bzimage_sha256": info.get("bzimage_sha256")},
            })  # fmt: skip
        host_build = _id(run["run_id"], "host")
        for n, case in enumerate(run["tests"]["cases"]):
            tests.append({
                "id": _id(run["run_id"], str(case.get("attempt", 0)), case["level"], case["name"], str(n)),
                "origin": ORIGIN, "build_id": host_build,
                "path": f"pvsched_lab.{case['level']}.{case['name']}",
                "status": STATUS.get(case["status"], "ERROR"),
                "duration": float(case.get("seconds") or 0),
                "environment": {"comment": (run.get("host") or {}).get("runner", "")},
                "misc": {"run_id": run["run_id"], "attempt": case.get("attempt", 0), "message": case.get("message", "")[:1000]},
            })  # fmt: skip
        if failed_step and not failed_step.startswith(("config ", "build ")):
            # A step after the builds that failed: the run's tests did not all run.
            tests.append({"id": _id(run["run_id"], "step", failed_step), "origin": ORIGIN, "build_id": host_build,
                          "path": "pvsched_lab.steps", "status": "ERROR",
                          "misc": {"message": run["failed_step"]["message"][:1000]}})  # fmt: skip
    return {"version": SCHEMA_VERSION, "checkouts": list(checkouts.values()), "builds": builds, "tests": tests}


def write(dirs: list[Path], out: Path) -> dict[str, Any]:
    data = export(load(dirs))
    out.write_text(json.dumps(data, indent=2) + "\n")
    return data
