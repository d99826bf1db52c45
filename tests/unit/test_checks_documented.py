"""docs/pvsched.md's table of functional tests is the list of pvsched
checks the lab can report: every name the code can emit is in it, and every
name in it is one the code can emit."""

from __future__ import annotations

import re
from pathlib import Path

from lab.pipeline import REJECTED_BPF

REPO = Path(__file__).resolve().parents[2]
# Every string literal of lab/ that starts so is a check's name, but these
# (files, module parameters, programs) are not: a new one is one or the other.
PY_NAME = re.compile(r"[\"'](pvsched_[a-z0-9_]+)[\"']")
NOT_CHECKS = {
    "pvsched_bad_register",
    "pvsched_bad_scx",
    "pvsched_bad_tracing",
    "pvsched_boost",
    "pvsched_scx",  # BPF objects
    "pvsched_budget_us",
    "pvsched_period_us",
    "pvsched_vm_budget_us",
    "pvsched_slice_us",  # KVM module parameters
    "pvsched_lab",
    "pvsched_guest",
    "pvsched_tests",  # names of the lab, the guest module, its test group
}
# A check, or a cs_probe phase (which runs one).
SHELL_CHECK = re.compile(r"^\s*(?:check|cs_probe_phase \w+) (pvsched_[a-z0-9_]+)\b", re.M)


def emitted() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "lab").rglob("*.py"):
        names |= set(PY_NAME.findall(path.read_text())) - NOT_CHECKS
    names |= set(SHELL_CHECK.findall((REPO / "lab/invm/guest_init.sh").read_text()))
    names |= {f"pvsched_verifier_rejects_{name}" for name in REJECTED_BPF}
    return names


def documented() -> set[str]:
    text = (REPO / "docs/pvsched.md").read_text()
    table = text[text.index("## Functional tests") :]
    table = table[: table.index("\n## ", 1)]
    return set(re.findall(r"`(pvsched_[a-z0-9_]+)`", table))


def test_every_check_the_lab_emits_is_documented() -> None:
    missing = sorted(emitted() - documented())
    assert not missing, f"add to docs/pvsched.md's test table: {missing}"


def test_every_documented_check_is_emitted() -> None:
    stale = sorted(documented() - emitted())
    assert not stale, f"docs/pvsched.md names checks nothing emits: {stale}"


def test_the_extraction_finds_checks_of_every_kind() -> None:
    found = emitted()
    assert "pvsched_module_unload" in found  # guest_init.sh
    assert "pvsched_policy_attaches" in found  # Case(...) in level 1
    assert "pvsched_vm_destroy_unregisters" in found  # a name variable
    assert "pvsched_verifier_rejects_pvsched_bad_scx" in found
    assert len(found) > 40


def test_every_mutant_expects_checks_the_lab_can_report() -> None:
    """A renamed check would leave its mutants unkillable ("inconclusive" for ever)."""
    from lab import mutants

    reportable = emitted() | {"no_splats_level1", "no_splats_level2", "level2_boots"}
    for mutant in mutants.load_catalogue():
        unknown = set(mutant.expect) - reportable
        assert not unknown, f"{mutant.name} expects checks no code reports: {sorted(unknown)}"
