"""The CI workflow keeps the properties a maintainer merges it for (actionlint
checks its syntax in `nox -s lint`; this checks its design)."""

from __future__ import annotations

from typing import Any

import yaml

from lab.paths import REPO


def _workflow() -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load((REPO / ".github/workflows/lab.yml").read_text())
    return data


def test_a_fast_job_gates_the_lab_matrix_and_one_report_merges_every_leg() -> None:
    jobs = _workflow()["jobs"]
    assert jobs["lab"]["needs"] == "checks"
    matrix = jobs["lab"]["strategy"]
    assert matrix["fail-fast"] is False
    assert set(matrix["matrix"]["suite"]) == {"functional", "stress", "bench"} and set(matrix["matrix"]["profile"]) == {"default", "debug"}
    uploads = [s for s in jobs["lab"]["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and all("matrix.suite" in s["with"]["name"] and "matrix.profile" in s["with"]["name"] for s in uploads)
    assert all("github.run_attempt" in s["with"]["name"] for s in uploads)
    report = jobs["report"]
    assert report["needs"] == "lab" and "always()" in report["if"]
    assert any("python -m lab merge" in str(s.get("run", "")) for s in report["steps"])


def test_the_cache_is_saved_whatever_the_verdict_and_holds_no_trees() -> None:
    steps = _workflow()["jobs"]["lab"]["steps"]
    save = next(s for s in steps if s.get("uses", "").startswith("actions/cache/save"))
    chown = next(i for i, s in enumerate(steps) if "chown" in str(s.get("run", "")))
    assert "always()" in save["if"] and chown < steps.index(save)
    paths = save["with"]["path"]
    assert "ccache" in paths and "kernels" in paths and "/src" not in paths and "/build" not in paths


def test_a_newer_push_cancels_the_older_run() -> None:
    concurrency = _workflow()["concurrency"]
    assert concurrency["cancel-in-progress"] is True and "github.ref" in concurrency["group"]
