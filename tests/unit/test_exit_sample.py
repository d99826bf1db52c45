"""Level 1's look at a level-2 guest about to time out: its vCPUs' exits
(no VM: a fake tracefs and a stand-in QEMU that writes KVM's lines)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from test_shutdown_trace import fake_tracefs

from lab import exit_record
from lab.exit_record import VcpuExits
from lab.invm import exit_sample, level2, shutdown_trace
from lab.runner import Runner
from lab.symbols import SymbolMap


def exit_line(tid: int, vcpu: int, reason: str, rip: int) -> str:
    return (f" qemu-system-x86-{tid} [001] d..1.  95.250331: kvm_exit: vcpu {vcpu} reason {reason} rip {rip:#x} "
            "info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000")  # fmt: skip


def test_exits_are_counted_per_vcpu_of_one_qemu_by_reason_and_rip(tmp_path: Path) -> None:
    loop = [exit_line(101, 1, "npf", 0xFFFFFFFF81042C10)] * 9 + [exit_line(101, 1, "cpuid", 0xFFFFFFFF81000010)]
    other_vm = [exit_line(202, 0, "hlt", 0xFFFFFFFF81000000)] * 5
    found = exit_sample.parse("\n".join(loop + other_vm), {100, 101})
    assert list(found) == [1] and found[1].count == 10
    assert found[1].top[0] == ("npf", 0xFFFFFFFF81042C10, 9)
    system_map = tmp_path / "System.map"
    system_map.write_text("ffffffff81042b00 T cs_probe_section\nffffffff81043000 T other\n")
    said = found[1].describe(2.0, SymbolMap(system_map))
    assert said == "vCPU 1 5 exits/s, 90 % npf at 0xffffffff81042c10 (cs_probe_section+0x110)"
    assert VcpuExits(0, 0, []).describe(2.0, None) == "vCPU 0 no exits (halted or not run)"


def test_a_guest_that_times_out_carries_what_its_vcpus_did(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = fake_tracefs(tmp_path / "tracefs")
    monkeypatch.setattr(shutdown_trace, "TRACEFS_DIRS", (base,))
    monkeypatch.setattr(exit_sample, "SAMPLE_S", 1.0)
    qemu = tmp_path / "qemu"  # ready, then vCPU 1 loops on one exit (KVM's lines written as it runs), never done
    qemu.write_text(
        "#!/bin/sh\necho 'LAB-GUEST-READY 1.0'\n"
        f"while :; do printf ' qemu-system-x86-%s [001] d..1.  9.1: kvm_exit: vcpu 1 reason npf rip 0xffffffff81042c10 x\\n' $$ >> {base / 'trace'}; sleep 0.05; done\n"  # noqa: E501
    )
    qemu.chmod(qemu.stat().st_mode | stat.S_IEXEC)
    cfg = {"qemu": str(qemu), "guest_cpus": 2, "guest_mem_mb": 256, "guest_kernel": str(tmp_path / "bzImage"),
           "guest_initramfs": str(tmp_path / "initramfs"), "kvm_timeout": 4, "tcg_timeout": 4,
           "trace_shutdowns": True}  # fmt: skip
    probe, _ = level2.boot_guest(Runner(tmp_path / "logs"), cfg, "kvm", tmp_path, label="t")
    assert not probe.ok and "timed out after 4 s" in probe.reason
    assert re.search(
        r"KVM in the last [\d.]+ s: vCPU 0 no exits \(halted or not run\); vCPU 1 \d+ exits/s, 100 % npf at 0xffffffff81042c10",
        probe.reason,
    )
    # The same sample as data, for the host's emulator signs.
    vcpus, seconds = exit_record.read_record(tmp_path / exit_record.record_name("t"))
    assert seconds >= 1.0 and [v.vcpu for v in vcpus] == [0, 1]
    assert vcpus[0].count == 0 and vcpus[1].top[0][:2] == ("npf", 0xFFFFFFFF81042C10) and vcpus[1].top[0][2] == vcpus[1].count
    # The shutdown filter is back for the next boot.
    assert (base / shutdown_trace.EVENT / "filter").read_text().strip() == shutdown_trace.SHUTDOWN_FILTER
