from __future__ import annotations

from pathlib import Path

import pytest

from lab.runner import Runner


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path / "logs")


@pytest.fixture(autouse=True)
def _kernel_log_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Level 1's marks (lab.invm.marks) go to a file here, not to this machine's kernel log."""
    from lab.invm import marks

    monkeypatch.setattr(marks, "KMSG", tmp_path / "kmsg")


@pytest.fixture
def every_sign_attributable(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the emulator control had seen every signature on the unpatched
    kernel: for tests of how a sign excuses, not of which signs may."""
    from lab import emulator_faults

    monkeypatch.setattr(emulator_faults, "ATTRIBUTABLE", frozenset(emulator_faults.SIGNATURES))
