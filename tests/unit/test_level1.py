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


def test_a_reboot_guest_silent_for_half_its_bound_is_sampled_then(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run 11d8: the reboot guest stalled and level 1 died before the check's
    deadline, with no sample of the guest. The sample now comes at its silence."""
    from test_shutdown_trace import fake_tracefs

    from lab import exit_record
    from lab.invm import exit_sample, shutdown_trace
    from lab.invm.level1 import reboot_case
    from lab.runner import Runner

    base = fake_tracefs(tmp_path / "tracefs")
    monkeypatch.setattr(shutdown_trace, "TRACEFS_DIRS", (base,))
    monkeypatch.setattr(exit_sample, "SAMPLE_S", 0.5)
    qemu = tmp_path / "qemu"  # silent for 3 s between its boots, then finishes
    qemu.write_text(
        "#!/bin/sh\necho 'LAB-REBOOT-BOOT stale=0 registered=2'\nsleep 3\necho 'LAB-REBOOT-BOOT stale=0 registered=2'\nsleep 30\n"
    )
    qemu.chmod(0o755)
    cfg = {"qemu": str(qemu), "guest_cpus": 2, "guest_mem_mb": 256, "kvm_timeout": 4.0,
           "guest_kernel": str(tmp_path / "k"), "guest_initramfs": "i", "trace_shutdowns": True}  # fmt: skip
    case, _ = reboot_case(Runner(tmp_path / "logs"), cfg, tmp_path)
    assert case.status == "passed", case.message
    assert (tmp_path / exit_record.record_name("reboot")).exists()  # sampled at 2 s of silence, before the second boot


DUMP = ["LAB-GUEST-DMESG-BEGIN", "[    1.0] pvsched_guest: registered 2 vCPUs", "LAB-GUEST-DMESG-END"]


@pytest.mark.parametrize(
    ("lines", "status", "said"),
    [
        (["LAB-KEXEC-BOOT 1 stale=0 registered=2", *DUMP, "LAB-KEXEC-BOOT 2 stale=0 registered=2", *DUMP, "LAB-GUEST-DONE"],
         "passed", "kernel 2 (after kexec): 0 stale, 2 registered (of 2)"),
        # vCPU 0 still registered when the second kernel registers: nothing unregistered it at the kexec.
        (["LAB-KEXEC-BOOT 1 stale=0 registered=2", *DUMP, "LAB-KEXEC-BOOT 2 stale=1 registered=2", *DUMP, "LAB-GUEST-DONE"],
         "failed", "1 stale"),
        (["LAB-KEXEC-BOOT 1 stale=0 registered=2", *DUMP, "LAB-KEXEC-FAILED", *DUMP, "LAB-GUEST-DONE"],
         "failed", "kexec failed: no data"),
        # The second kernel reported and then died: no verdict on a guest that did not finish.
        (["LAB-KEXEC-BOOT 1 stale=0 registered=2", *DUMP, "LAB-KEXEC-BOOT 2 stale=0 registered=2"], "failed", "never finished"),
        # It finished and then did not power off: stopped, and said.
        (["LAB-KEXEC-BOOT 1 stale=0 registered=2", *DUMP, "LAB-KEXEC-BOOT 2 stale=0 registered=2", *DUMP, "LAB-GUEST-DONE", "@hang"],
         "failed", "did not power off within 1 s"),
    ],
)  # fmt: skip
def test_the_kexec_check_judges_the_second_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str], status: str, said: str
) -> None:
    from lab.invm import level1
    from lab.invm.level1 import kexec_case
    from lab.runner import Runner

    monkeypatch.setattr(level1, "KEXEC_POWER_OFF_S", 1.0)
    qemu = tmp_path / "qemu"
    body = "".join("sleep 30\n" if line == "@hang" else f"echo '{line}'\n" for line in lines)
    qemu.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\n{body}')
    qemu.chmod(0o755)
    cfg = {"qemu": str(qemu), "guest_cpus": 2, "guest_mem_mb": 256, "kvm_timeout": 5.0, "tcg_timeout": 5.0,
           "guest_kernel": str(tmp_path / "bzImage"), "guest_initramfs": str(tmp_path / "initrd.gz")}  # fmt: skip
    case, _ = kexec_case(Runner(tmp_path / "logs"), cfg, tmp_path)
    assert case.status == status and said in case.message, case.message
    args = (tmp_path / "args").read_text()
    assert f"-drive file={tmp_path}/bzImage,if=virtio,format=raw,readonly=on" in args
    assert f"-drive file={tmp_path}/initrd.gz,if=virtio,format=raw,readonly=on" in args
    assert "lab.mode=kexec" in args


def test_a_second_kernel_that_died_in_its_boot_says_what_kvm_saw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_shutdown_trace import SHUTDOWN, fake_tracefs

    from lab.invm import shutdown_trace
    from lab.invm.level1 import kexec_case
    from lab.runner import Runner

    # The unmodified tree's run in mutants-20261204T164808Z: the first kernel
    # reported and kexec'd, the second printed one line and QEMU exited 0.
    base = fake_tracefs(tmp_path / "tracefs")
    monkeypatch.setattr(shutdown_trace, "TRACEFS_DIRS", (base,))
    qemu = tmp_path / "qemu"
    body = "".join(f"echo '{line}'\n" for line in ["LAB-KEXEC-BOOT 1 stale=0 registered=2", *DUMP])
    qemu.write_text(f"#!/bin/sh\n{body}echo '{SHUTDOWN}' >> {base}/trace\nexit 0\n")
    qemu.chmod(0o755)
    cfg = {"qemu": str(qemu), "guest_cpus": 2, "guest_mem_mb": 256, "kvm_timeout": 5.0, "tcg_timeout": 5.0,
           "guest_kernel": str(tmp_path / "bzImage"), "guest_initramfs": "i", "trace_shutdowns": True}  # fmt: skip
    case, _ = kexec_case(Runner(tmp_path / "logs"), cfg, tmp_path)
    assert case.status == "failed"
    assert case.message.startswith("boots reported: [1]; the guest never finished: no data; QEMU exit 0; KVM saw a shutdown exit")
    # Said in level 1's console with the guest's console, where the host reads the sign from (test run 123b's attempt 2).
    from lab.emulator_faults import _TRIPLE_FAULT

    m = _TRIPLE_FAULT.search(capsys.readouterr().out)
    assert m and m[2] == "level2-console-kexec.log" and "shutdown at 0x" in m[1]


def test_a_kexec_guest_silent_for_half_its_bound_is_sampled_then(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_shutdown_trace import fake_tracefs

    from lab import exit_record
    from lab.invm import exit_sample, shutdown_trace
    from lab.invm.level1 import kexec_case
    from lab.runner import Runner

    base = fake_tracefs(tmp_path / "tracefs")
    monkeypatch.setattr(shutdown_trace, "TRACEFS_DIRS", (base,))
    monkeypatch.setattr(exit_sample, "SAMPLE_S", 0.5)
    first = "".join(f"echo '{line}'\n" for line in ["LAB-KEXEC-BOOT 1 stale=0 registered=2", *DUMP])
    second = "".join(f"echo '{line}'\n" for line in ["LAB-KEXEC-BOOT 2 stale=0 registered=2", *DUMP, "LAB-GUEST-DONE"])
    qemu = tmp_path / "qemu"  # silent for 3 s between its kernels, then finishes and powers off
    qemu.write_text(f"#!/bin/sh\n{first}sleep 3\n{second}")
    qemu.chmod(0o755)
    cfg = {"qemu": str(qemu), "guest_cpus": 2, "guest_mem_mb": 256, "kvm_timeout": 4.0, "tcg_timeout": 4.0,
           "guest_kernel": str(tmp_path / "bzImage"), "guest_initramfs": "i", "trace_shutdowns": True}  # fmt: skip
    case, _ = kexec_case(Runner(tmp_path / "logs"), cfg, tmp_path)
    assert case.status == "passed", case.message
    assert (tmp_path / exit_record.record_name("kexec")).exists()  # sampled at 2 s of silence, before the second kernel
