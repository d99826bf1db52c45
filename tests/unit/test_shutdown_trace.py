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


# A triple fault of a guest's user code (the stress suite's, run 8cbe's address), and the probe's line after it.
USER_SHUTDOWN = (
    " qemu-system-x86-412 [001] d..1.  95.250331: kvm_exit: vcpu 0 reason shutdown rip 0x528293 "
    "info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000\n"
    " qemu-system-x86-412 [001] d..1.  95.250340: lab_shutdown_state: (shutdown_interception+0x0/0x90) rip=0x528293 "
    "rsp=0x7ffd5a1c0ff8 cr2=0xfffffe0000046ff8 cr3=0x1a3e000 cpl=3 idt=0xfffffe0000000000 tr=0xfffffe0000043000 "
    "exitintinfo=0x8000030e exitinfo1=0x0\n"
)


def test_the_guests_state_at_a_shutdown_is_probed_from_the_vmcb(tmp_path: Path) -> None:
    from test_btf_offsets import BLOB

    base = fake_tracefs(tmp_path / "tracefs")
    (base / "kprobe_events").write_text("")
    btf = tmp_path / "vmlinux"
    btf.write_bytes(BLOB)
    # The kernel makes the event's directory once the probe is placed; the fake has none yet.
    assert shutdown_trace.arm(base, btf).startswith("kprobe on shutdown_interception not enabled")
    placed = (base / "kprobe_events").read_text()
    assert placed.startswith("p:lab/lab_shutdown_state shutdown_interception rip=+0x578(+0x17f8(%di)):x64 ")
    assert "cr2=+0x640(+0x17f8(%di)):x64" in placed and "cpl=+0x4cb(+0x17f8(%di)):u8" in placed
    assert "ncr3=+0xb0(+0x17f8(%di)):x64" in placed  # N_CR3: level 1's nested tables for the guest
    event = base / "events/lab/lab_shutdown_state"
    event.mkdir(parents=True)
    assert shutdown_trace.arm(base, btf) == ""
    assert (base / "kprobe_events").read_text() == placed  # placed once per boot
    assert (event / "enable").read_text() == "1\n"
    vmx = tmp_path / "vmx"
    vmx.write_bytes(BLOB.replace(b"vcpu_svm", b"vcpu_vmx"))
    assert shutdown_trace.arm_state_probe(tmp_path / "other", vmx) == "no struct vcpu_svm in the kernel's BTF (no SVM)"


def test_a_shutdown_carries_the_state_printed_after_it() -> None:
    exits = shutdown_trace.parse(USER_SHUTDOWN)
    assert [(e.vcpu, e.rip) for e in exits] == [(0, 0x528293)]
    said = shutdown_trace.verdict(exits)
    assert said.startswith("KVM saw a shutdown exit (triple fault): vCPU 0 shutdown at 0x528293, its state rip=0x528293 ")
    assert "cr2=0xfffffe0000046ff8" in said and said.endswith("exitinfo1=0x0")
    # What the host parses of it still holds (lab.emulator_faults, lab.emulator_control).
    from lab.emulator_control import user_mode_triple_faults
    from lab.emulator_faults import _TRIPLE_FAULT, SHUTDOWN_AT

    reason = f"guest did not finish (qemu exit status 0; {said}) (console /out/level2-console-control-1.log)"
    m = _TRIPLE_FAULT.search(reason)
    assert m and SHUTDOWN_AT.findall(m[1])[0][:2] == ("0", "0x528293") and user_mode_triple_faults(reason) == [0x528293]
    # Without its probe line a shutdown is still named; with a state for none of them none is paired.
    assert shutdown_trace.parse(USER_SHUTDOWN.splitlines()[0])[0].state == ""
    assert all(e.state == "" for e in shutdown_trace.parse(USER_SHUTDOWN + SHUTDOWN))
