"""guest-resumed-past-exit: a guest's silent triple fault right after an instruction that exits to level 1."""

from __future__ import annotations

from pathlib import Path

from lab import emulator_faults, exit_returns

# objdump -d --no-show-raw-insn of the unpatched kernel's queued_spin_lock_slowpath, cut short.
SPIN = """
ffffffff815181c1 <.text+0x5181c1>:
ffffffff815181c1:\tendbr64
ffffffff815181e2:\tmov    (%rbx),%eax
ffffffff815181e4:\ttest   %eax,%eax
ffffffff815181e6:\tje     0xffffffff815181ec
ffffffff815181e8:\tpause
ffffffff815181ea:\tjmp    0xffffffff815181e2
ffffffff815181ec:\tlock cmpxchg %edx,(%rbx)
"""
SERIAL = """
ffffffff813c2a75:\tadd    0x8(%rdi),%edx
ffffffff813c2a78:\tout    %al,(%dx)
ffffffff813c2a79:\tret
"""


def test_the_instruction_that_ends_at_an_address_is_named() -> None:
    assert exit_returns.instruction_before(SPIN, 0xFFFFFFFF815181EA) == "pause"
    assert exit_returns.instruction_before(SERIAL, 0xFFFFFFFF813C2A79) == "out"
    assert exit_returns.instruction_before(SPIN, 0xFFFFFFFF815181EC) == "jmp"  # not an exiting one
    assert exit_returns.instruction_before(SPIN, 0xFFFFFFFF815181E9) is None  # inside an instruction
    assert exit_returns.instruction_before(SPIN, 0xFFFFFFFF815181C1) is None  # nothing before it here


def test_the_function_holding_an_address_starts_at_the_nearest_symbol_below(tmp_path: Path) -> None:
    system_map = tmp_path / "System.map"
    system_map.write_text("ffffffff813c2a5f t io_serial_out\nffffffff813c2a7e t set_io_from_upio\nffffffff82000000 D some_data\n")
    assert exit_returns.function_start(system_map, 0xFFFFFFFF813C2A79) == 0xFFFFFFFF813C2A5F
    assert exit_returns.function_start(system_map, 0xFFFFFFFF813C2A00) is None


WITNESS = (
    "control boot 2: guest did not finish (qemu exit status 0; KVM saw a shutdown exit (triple fault): "
    "vCPU 0 shutdown at 0xffffffff813c2a79 (io_serial_out+0x1a)) (console /r/base-girq-1/level2-console-control-2.log)\n"
)


def _attempt(tmp_path: Path, guest: str) -> Path:
    (tmp_path / "level2-console-control-2.log").write_text(guest)
    return tmp_path


def test_a_silent_triple_fault_after_an_exit_is_the_sign(tmp_path: Path) -> None:
    attempt = _attempt(tmp_path, "[    1.0] booting\nNMI backtrace for cpu 1\n")
    found = emulator_faults.resumed_past_exit(attempt, WITNESS, {0xFFFFFFFF813C2A79: "out"}.get)
    assert [(e.signature, e.source, e.line_no) for e in found] == [("guest-resumed-past-exit", "level2-console-control-2.log", 2)]
    assert "right after `out`" in found[0].detail
    # A guest that died before it printed anything: the sign at its empty console's first line.
    attempt = _attempt(tmp_path, "")
    found = emulator_faults.resumed_past_exit(attempt, WITNESS, {0xFFFFFFFF813C2A79: "out"}.get)
    assert [(e.source, e.line_no) for e in found] == [("level2-console-control-2.log", 1)]
    (tmp_path / "level2-console-control-2.log").unlink()  # no console kept: no place for it
    assert emulator_faults.resumed_past_exit(tmp_path, WITNESS, {0xFFFFFFFF813C2A79: "out"}.get) == []


def test_a_triple_fault_elsewhere_or_after_a_reported_crash_is_not(tmp_path: Path) -> None:
    attempt = _attempt(tmp_path, "[    1.0] booting\n")
    assert emulator_faults.resumed_past_exit(attempt, WITNESS, lambda rip: None) == []
    attempt = _attempt(tmp_path, "[    1.0] booting\n[    2.0] Kernel panic - not syncing: Fatal exception\n")
    assert emulator_faults.resumed_past_exit(attempt, WITNESS, {0xFFFFFFFF813C2A79: "out"}.get) == []
    # A witness without the guest's console (a kexec or hostile guest's report) names no console to place it in.
    assert emulator_faults.resumed_past_exit(attempt, WITNESS.split(" (console")[0] + "\n", {0xFFFFFFFF813C2A79: "out"}.get) == []


def test_a_guest_kernel_whose_text_cannot_be_read_gives_no_sign(tmp_path: Path, runner) -> None:  # type: ignore[no-untyped-def]
    kernel = tmp_path / "kernel"
    kernel.mkdir()
    (kernel / "bzImage").write_bytes(b"not a bzImage")
    (kernel / "System.map").write_text("ffffffff813c2a5f t io_serial_out\n")
    (tmp_path / "level1-config.json").write_text(f'{{"guest_kernel": "{kernel / "bzImage"}"}}')
    assert exit_returns.GuestText(runner, tmp_path).exit_before(0xFFFFFFFF813C2A79) is None
    (tmp_path / "level1-config.json").unlink()
    assert exit_returns.GuestText(runner, tmp_path).exit_before(0xFFFFFFFF813C2A79) is None
