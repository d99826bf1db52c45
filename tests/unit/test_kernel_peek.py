from __future__ import annotations

import pytest

from lab.invm import kernel_peek

LINE = "          python3-812 [000] ..... 61.310247: lab_peek: (__x64_sys_getppid+0x0/0x30) v={}\n"


def test_the_peeked_value_is_read() -> None:
    assert kernel_peek.parse(LINE.format("0x800000000224d121"), "@0x1") == 0x800000000224D121


@pytest.mark.parametrize("trace", [LINE.format("(fault)"), "# tracer: nop\n"])
def test_a_faulted_or_missing_read_is_an_error(trace: str) -> None:
    with pytest.raises(OSError):
        kernel_peek.parse(trace, "@0xffff888000001000")


def test_a_peek_left_defined_is_removed_first(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A look cut short (QEMU killed mid-walk) leaves lab_peek defined; the next one removes it before defining its own."""
    (tmp_path / "kprobe_events").write_text("")
    (tmp_path / "instances").mkdir()  # tracefs has it
    kernel_peek.KernelPeek(tmp_path, kallsyms=tmp_path / "no-kallsyms")
    assert (tmp_path / "kprobe_events").read_text() == "-:lab/lab_peek\n"
    assert (tmp_path / "instances" / "lab-peek").is_dir()
