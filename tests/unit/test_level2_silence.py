"""A level-2 guest whose work outlasts the boot timeout but keeps printing
progress runs to its end when the host bounds its silence (a stand-in QEMU,
no VM)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lab.invm import level2
from lab.protocol import GUEST_DONE, GUEST_READY
from lab.runner import Runner


def fake_qemu(tmp_path: Path, body: str) -> dict[str, object]:
    qemu = tmp_path / "qemu"
    qemu.write_text(f"#!/bin/sh\necho '{GUEST_READY} 1.0'\n{body}\n")
    qemu.chmod(qemu.stat().st_mode | stat.S_IEXEC)
    return {"qemu": str(qemu), "guest_cpus": 2, "guest_mem_mb": 256, "guest_kernel": str(tmp_path / "bzImage"),
            "guest_initramfs": str(tmp_path / "initramfs"), "kvm_timeout": 1.5, "tcg_timeout": 1.5}  # fmt: skip


# Ten rounds of 0.4 s: 4 s in all, never 1.5 s without a line (the debug
# profile's hotplug rounds outlasted a fixed timeout while the guest worked).
PROGRESSING = f"for r in 1 2 3 4 5 6 7 8 9 10; do sleep 0.4; echo \"round $r\"; done\necho '{GUEST_DONE}'"


def test_a_guest_making_progress_runs_past_the_timeout_when_silence_is_bounded(tmp_path: Path) -> None:
    probe, console = level2.boot_guest(Runner(tmp_path / "logs"), fake_qemu(tmp_path, PROGRESSING), "kvm", tmp_path,
                                       label="progress", until_silent=True)  # fmt: skip
    assert probe.ok, probe.reason
    assert "round 10" in console


def test_the_same_guest_times_out_under_a_bound_on_its_whole_run(tmp_path: Path) -> None:
    probe, _ = level2.boot_guest(Runner(tmp_path / "logs"), fake_qemu(tmp_path, PROGRESSING), "kvm", tmp_path, label="whole")
    assert not probe.ok and probe.reason.startswith("timed out after 2 s")


@pytest.mark.parametrize("body", ["sleep 30", "echo 'round 1'; sleep 30"])
def test_a_guest_that_falls_silent_fails_its_boot_as_silent(tmp_path: Path, body: str) -> None:
    probe, _ = level2.boot_guest(Runner(tmp_path / "logs"), fake_qemu(tmp_path, body), "kvm", tmp_path,
                                 label="silent", until_silent=True)  # fmt: skip
    assert not probe.ok and probe.reason.startswith("silent for 2 s")
