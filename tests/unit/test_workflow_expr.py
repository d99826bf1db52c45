"""GitHub's expression rules on the conditions our workflow uses (lab.workflow_expr)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lab.workflow_expr import Context, ExpressionError, condition, evaluate, expand, hash_files


def _ctx(tmp_path: Path, failed: bool = False, **contexts: object) -> Context:
    base: dict[str, object] = {"github": {"event_name": "push", "run_attempt": "1"}, "inputs": {"good": ""}, "steps": {}, "needs": {}}
    return Context({**base, **contexts}, tmp_path, failed)


def test_the_cache_save_runs_after_a_failure_unless_the_primary_key_hit(tmp_path: Path) -> None:
    save = "always() && steps.cache.outputs.cache-hit != 'true'"
    assert condition(save, _ctx(tmp_path, True, steps={"cache": {"outputs": {"cache-hit": "false"}}}))
    assert not condition(save, _ctx(tmp_path, False, steps={"cache": {"outputs": {"cache-hit": "true"}}}))
    # A restore step that never ran: its outputs are null, not an error.
    assert condition(save, _ctx(tmp_path, False))


def test_a_condition_without_a_status_function_also_needs_success(tmp_path: Path) -> None:
    checks = "github.event_name != 'workflow_dispatch' || inputs.good == ''"
    assert condition(checks, _ctx(tmp_path))
    assert not condition(checks, _ctx(tmp_path, failed=True))
    assert not condition("${{ github.event_name == 'workflow_dispatch' }}", _ctx(tmp_path))
    assert condition(None, _ctx(tmp_path)) and not condition(None, _ctx(tmp_path, failed=True))


def test_the_report_runs_whatever_the_legs_did_but_not_when_they_were_skipped(tmp_path: Path) -> None:
    report = "always() && needs.lab.result != 'skipped'"
    assert condition(report, _ctx(tmp_path, needs={"lab": {"result": "failure"}}))
    assert not condition(report, _ctx(tmp_path, needs={"lab": {"result": "skipped"}}))


def test_values_compare_as_github_compares_them(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    assert evaluate("'ABC' == 'abc'", ctx) is True  # strings ignore case
    assert evaluate("github.run_attempt == 1", ctx) is True  # a string and a number compare as numbers
    assert evaluate("'' || 'x'", ctx) == "x" and evaluate("'a' && ''", ctx) == ""
    assert evaluate("!inputs.good", ctx) is True
    assert evaluate("'it''s'", ctx) == "it's"


def test_templates_expand_and_unknown_names_fail_closed(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, matrix={"suite": "bench", "profile": "debug"})
    assert expand("results-${{ matrix.suite }}-${{ matrix.profile }}-${{ github.run_attempt }}", ctx) == "results-bench-debug-1"
    with pytest.raises(ExpressionError, match="unknown context 'secrets'"):
        evaluate("secrets.TOKEN", ctx)
    with pytest.raises(ExpressionError, match="fromJSON"):
        evaluate("fromJSON('{}')", ctx)
    with pytest.raises(ExpressionError):
        evaluate("matrix.suite ==", ctx)


def test_hash_files_hashes_each_file_then_the_hashes_in_path_order(tmp_path: Path) -> None:
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel/source.lock").write_text("lock\n")
    (tmp_path / "kernel/b.patch").write_text("b\n")
    expected = hashlib.sha256()
    for name in ("kernel/b.patch", "kernel/source.lock"):
        expected.update(hashlib.sha256((tmp_path / name).read_bytes()).digest())
    assert hash_files(tmp_path, ["kernel/**", "kernel/source.lock"]) == expected.hexdigest()
    assert hash_files(tmp_path, ["nothing/*"]) == ""
    ctx = _ctx(tmp_path)
    assert expand("lab-${{ hashFiles('kernel/source.lock', 'kernel/**') }}", ctx) == "lab-" + expected.hexdigest()
