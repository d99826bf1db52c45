"""Addresses to names from a System.map (no kernel needed)."""

from __future__ import annotations

from pathlib import Path

from lab.symbols import SymbolMap

# The shape of the guest kernel's map around the 20261203T134323Z-d874 triple fault:
# `wrmsrl` is a static copy the compiler emitted in apic.c (and in ~100 other units).
MAP = """\
ffffffff8100471a t wrmsrl
ffffffff81004800 T intel_pmu_enable_all
ffffffff810ab54c T x86_msi_msg_get_destid
ffffffff810ab56a t native_read_msr
ffffffff810ab605 t wrmsrl
ffffffff810ab624 t lapic_next_deadline
ffffffff810ab700 D some_data
"""


def symbols(tmp_path: Path) -> SymbolMap:
    path = tmp_path / "System.map"
    path.write_text(MAP)
    return SymbolMap(path)


def test_a_unique_function_is_named_with_its_offset(tmp_path: Path) -> None:
    assert symbols(tmp_path).name(0xFFFFFFFF810AB630) == "lapic_next_deadline+0xc"


def test_a_function_emitted_in_many_units_names_the_global_before_it(tmp_path: Path) -> None:
    said = symbols(tmp_path).name(0xFFFFFFFF810AB612)
    assert said.startswith("wrmsrl+0xd ")
    assert "one of 2 copies" in said and "after x86_msi_msg_get_destid" in said


def test_an_address_below_the_map_is_unknown(tmp_path: Path) -> None:
    assert symbols(tmp_path).name(0xFFFFFFFF81000000) == "?"
