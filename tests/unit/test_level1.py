"""Level 1's own checks that start guests, with a stand-in for QEMU."""

from __future__ import annotations

from pathlib import Path

import pytest


def _fake_qemu(tmp_path: Path, lines: list[str]) -> str:
    qemu = tmp_path / "qemu"
    body = "".join(f"echo '{line}'\n" for line in lines)
    qemu.write_text(f"#!/bin/sh\n{body}sleep 30\n")
    qemu.chmod(0o755)
    return str(qemu)


@pytest.mark.parametrize(
    ("lines", "status", "said"),
    [
        (["LAB-REBOOT-BOOT stale=0 registered=2", "reset", "LAB-REBOOT-BOOT stale=0 registered=2"], "passed", "boot 2"),
        # The first kernel's areas still registered when the second registers: the host wrote them meanwhile.
        (["LAB-REBOOT-BOOT stale=0 registered=2", "LAB-REBOOT-BOOT stale=1 registered=2"], "failed", "1 stale"),
        (["LAB-REBOOT-BOOT stale=0 registered=2"], "failed", "no data"),  # never came back
        (["LAB-REBOOT-BOOT stale=0 registered=2", "LAB-REBOOT-BOOT stale=0 registered=1"], "failed", "1 registered"),
    ],
)
def test_the_reboot_check_judges_the_second_boot(tmp_path: Path, lines: list[str], status: str, said: str) -> None:
    from lab.invm.level1 import reboot_case
    from lab.runner import Runner

    cfg = {"qemu": _fake_qemu(tmp_path, lines), "guest_cpus": 2, "guest_mem_mb": 256, "kvm_timeout": 1.5,
           "guest_kernel": "k", "guest_initramfs": "i"}  # fmt: skip
    case, console = reboot_case(Runner(tmp_path / "logs"), cfg, tmp_path)
    assert case.status == status and said in case.message, case.message
    assert (tmp_path / "level2-console-reboot.log").read_text().startswith("LAB-REBOOT-BOOT")


def test_a_reboot_guest_that_never_came_back_says_what_its_vcpus_did(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_shutdown_trace import fake_tracefs

    from lab.invm import exit_sample, shutdown_trace
    from lab.invm.level1 import reboot_case
    from lab.runner import Runner

    base = fake_tracefs(tmp_path / "tracefs")
    monkeypatch.setattr(shutdown_trace, "TRACEFS_DIRS", (base,))
    monkeypatch.setattr(exit_sample, "SAMPLE_S", 0.5)
    qemu = tmp_path / "qemu"  # one boot, then vCPU 0 halts for good: KVM sees no exit
    qemu.write_text("#!/bin/sh\necho 'LAB-REBOOT-BOOT stale=0 registered=2'\nsleep 30\n")
    qemu.chmod(0o755)
    cfg = {"qemu": str(qemu), "guest_cpus": 2, "guest_mem_mb": 256, "kvm_timeout": 1.0,
           "guest_kernel": str(tmp_path / "k"), "guest_initramfs": "i", "trace_shutdowns": True}  # fmt: skip
    case, _ = reboot_case(Runner(tmp_path / "logs"), cfg, tmp_path)
    import re

    assert case.status == "failed", case.message
    assert re.search(
        r"no data; KVM in the last [\d.]+ s: vCPU 0 no exits \(halted or not run\); vCPU 1 no exits \(halted or not run\)$", case.message
    ), case.message
