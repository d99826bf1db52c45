"""`lab bisect` finds planted regressions for real: kernel builds, boots, tests, bench.

Slow (several build + boot steps); run by `nox -s bisect_selftest`, not by the
unit tests.  The series is in tests/vm/planted.py.  The planted regressions
are deterministic, so each commit is judged once (`--retries 0`); the retry
logic has unit tests of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lab.paths import REPO, cache_dir
from lab.pipeline import Options, Pipeline
from tests.vm.planted import Planted, plant

THRESHOLD_US = os.environ.get("PLANTED_THRESHOLD_US", "2000")


@pytest.fixture(scope="module")
def planted() -> Planted:
    tree = Pipeline(Options(install=False)).source()
    return plant(tree.path, tree.head, cache_dir() / "planted-series")


def bisect(planted: Planted, *criterion: str) -> str:
    cmd = [sys.executable, "-m", "lab", "bisect", "--tree", str(planted.repo), "--good", planted.good, "--bad", planted.bad,
           "--restart", "--retries", "0", *criterion]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    sys.stdout.write(proc.stdout[-6000:])
    sys.stderr.write(proc.stderr[-3000:])
    assert proc.returncode == 0, f"lab bisect exited {proc.returncode}"
    return proc.stdout


def test_bisect_finds_planted_functional_regression(planted: Planted) -> None:
    out = bisect(planted, "--test", "pvsched_boost_sets_vcpu_thread_fifo")
    assert f"bisect: first bad commit {planted.functional}" in out


def test_bisect_finds_planted_performance_regression(planted: Planted) -> None:
    out = bisect(planted, "--bench", "idle.guest.avg_us", "--threshold", THRESHOLD_US)
    assert f"bisect: first bad commit {planted.performance}" in out
