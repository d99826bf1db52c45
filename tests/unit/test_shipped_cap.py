"""The lab's idea of KVM's shipped cap is the series' own: the functional
phases and the stress suite's hostile part are judged at it, and level 1
checks the kernel booted with it."""

from __future__ import annotations

import re
from pathlib import Path

from lab.protocol import SHIPPED_CAP_US

SERIES = Path(__file__).resolve().parents[2] / "kernel/patches"
PARAMS = {"budget": "pvsched_budget_us", "period": "pvsched_period_us", "vm_budget": "pvsched_vm_budget_us",
          "slice": "pvsched_slice_us"}  # fmt: skip


def series_defaults(text: str) -> dict[str, int]:
    found = {}
    for key, param in PARAMS.items():
        values = re.findall(rf"^\+static unsigned int {param} = (\d+);$", text, re.M)
        assert len(values) == 1, f"{param}: {values}"
        found[key] = int(values[0])
    return found


def test_the_shipped_cap_is_the_series_default() -> None:
    text = "".join(p.read_text() for p in sorted(SERIES.glob("*.patch")))
    assert series_defaults(text) == SHIPPED_CAP_US


def test_a_series_with_another_default_is_noticed() -> None:
    text = "".join(p.read_text() for p in sorted(SERIES.glob("*.patch")))
    shipped = f"+static unsigned int pvsched_budget_us = {SHIPPED_CAP_US['budget']};"
    assert shipped in text
    changed = text.replace(shipped, "+static unsigned int pvsched_budget_us = 500000;")
    assert series_defaults(changed) != SHIPPED_CAP_US


def test_the_shipped_vm_budget_binds_before_two_busy_vcpus_budgets() -> None:
    """The functional hostile phase keeps every vCPU busy: only a VM budget below
    their budgets together shows the VM's cap throttling (pvsched_vm_budget_holds)."""
    assert SHIPPED_CAP_US["vm_budget"] < 2 * SHIPPED_CAP_US["budget"] <= 2 * SHIPPED_CAP_US["period"]


def test_one_boost_is_cut_well_inside_the_budget() -> None:
    """pvsched_boost_ends_at_its_slice fails a boost longer than half the budget:
    the shipped slice must leave that bound room for the cap timer's lateness."""
    assert SHIPPED_CAP_US["slice"] * 4 <= SHIPPED_CAP_US["budget"]
