"""Level 1's witness of a level-2 guest that ends without a word (no VM:
a fake tracefs and a stand-in QEMU)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lab.invm import level2, shutdown_trace
from lab.runner import Runner
from lab.symbols import SymbolMap

# What KVM prints for a level-2 vCPU that triple-faulted (SVM), and one ordinary exit that the filter keeps out.
SHUTDOWN = (
    " qemu-system-x86-412 [001] d..1.  95.250331: kvm_exit: vcpu 1 reason shutdown rip 0xffffffff81042c10 "
    "info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000"
)


def fake_tracefs(root: Path) -> Path:
    event = root / shutdown_trace.EVENT
    event.mkdir(parents=True)
    for name in ("filter", "enable"):
        (event / name).write_text("0\n")
    (root / "trace").write_text("# tracer: nop\n")
    return root


def test_arm_records_shutdown_exits_only_from_an_empty_buffer(tmp_path: Path) -> None:
    base = fake_tracefs(tmp_path)
    (base / "trace").write_text(SHUTDOWN + "\n")  # left from an earlier boot
    shutdown_trace.arm(base)
    assert (base / shutdown_trace.EVENT / "filter").read_text().strip() == shutdown_trace.SHUTDOWN_FILTER
    assert (base / shutdown_trace.EVENT / "enable").read_text().strip() == "1"
    assert shutdown_trace.collect(base) == []


def test_a_triple_fault_is_named_with_its_vcpu_and_function(tmp_path: Path) -> None:
    system_map = tmp_path / "System.map"
    system_map.write_text("ffffffff81042b00 T pvsched_cpu_online\nffffffff81043000 T other\n")
    exits = shutdown_trace.parse(SHUTDOWN)
    assert exits == [shutdown_trace.ShutdownExit(1, "shutdown", 0xFFFFFFFF81042C10)]
    said = shutdown_trace.verdict(exits, SymbolMap(system_map))
    assert "triple fault" in said and "vCPU 1" in said and "pvsched_cpu_online+0x110" in said


def test_no_shutdown_exit_says_it_was_not_a_triple_fault() -> None:
    assert "no shutdown exit" in shutdown_trace.verdict([])


@pytest.mark.parametrize(("kvm_wrote", "said"), [(SHUTDOWN, "triple fault): vCPU 1 shutdown"), ("", "no shutdown exit")])
def test_a_guest_that_ends_early_carries_what_kvm_saw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kvm_wrote: str, said: str) -> None:
    base = fake_tracefs(tmp_path / "tracefs")
    monkeypatch.setattr(shutdown_trace, "TRACEFS_DIRS", (base,))
    qemu = tmp_path / "qemu"  # ready, then KVM records its exit, then QEMU ends 0 without LAB-GUEST-DONE
    qemu.write_text(f"#!/bin/sh\necho 'LAB-GUEST-READY 1.0'\nprintf '%s\\n' '{kvm_wrote}' >> {base / 'trace'}\nexit 0\n")
    qemu.chmod(qemu.stat().st_mode | stat.S_IEXEC)
    cfg = {"qemu": str(qemu), "guest_cpus": 2, "guest_mem_mb": 256, "guest_kernel": str(tmp_path / "bzImage"),
           "guest_initramfs": str(tmp_path / "initramfs"), "kvm_timeout": 30, "tcg_timeout": 30,
           "trace_shutdowns": True}  # fmt: skip
    probe, _ = level2.boot_guest(Runner(tmp_path / "logs"), cfg, "kvm", tmp_path, label="t")
    assert not probe.ok
    assert "qemu exit status 0" in probe.reason and said in probe.reason
