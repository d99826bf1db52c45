"""The VMRUN return address, found with objdump in a small kernel-like image
(the real assembler and linker, no kernel build)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab import landmarks
from lab.runner import Runner

IMAGE = """
	.text
	.globl before
before:
	ret
	.globl __svm_vcpu_run
__svm_vcpu_run:
	push %rbp
	mov %rdi, %rax
	vmrun %rax
	mov %rax, %rbx
	pop %rbp
	ret
	.globl __svm_sev_es_vcpu_run
__svm_sev_es_vcpu_run:
	vmrun %rax
	ret
"""


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, Path]:
    """(vmlinux, System.map) of IMAGE linked at the kernel's base address."""
    if not all(shutil.which(t) for t in ("gcc", "ld", "nm", "objdump")):
        pytest.skip("needs gcc, ld, nm and objdump")
    (tmp_path / "t.S").write_text(IMAGE)
    subprocess.run(["gcc", "-c", str(tmp_path / "t.S"), "-o", str(tmp_path / "t.o")], check=True)
    vmlinux = tmp_path / "vmlinux"
    subprocess.run(["ld", "-Ttext=0xffffffff81000000", "-e", "before", "-o", str(vmlinux), str(tmp_path / "t.o")], check=True)
    system_map = tmp_path / "System.map"
    system_map.write_text(subprocess.run(["nm", "-n", str(vmlinux)], check=True, capture_output=True, text=True).stdout)
    return vmlinux, system_map


def test_the_vmrun_return_is_the_instruction_after_vmrun_in_svm_vcpu_run(tmp_path: Path, image: tuple[Path, Path]) -> None:
    vmlinux, system_map = image
    # push (1 byte) and mov (3) before VMRUN (3): the next instruction is at +7; the other VMRUN, in the next function, is not counted.
    found = landmarks.find(Runner(tmp_path / "logs"), vmlinux, system_map)
    assert found == {landmarks.VMRUN_RETURN: 0xFFFFFFFF81000001 + 7}
    landmarks.write(tmp_path, found)
    assert landmarks.read(tmp_path) == found
    # Every command through the runner, logged so it can be run by hand.
    assert any("objdump -d" in p.read_text() for p in (tmp_path / "logs").iterdir())


def test_a_kernel_without_svm_code_has_no_landmark(tmp_path: Path, image: tuple[Path, Path]) -> None:
    vmlinux, system_map = image
    system_map.write_text(system_map.read_text().replace("__svm_vcpu_run", "other_function"))
    assert landmarks.find(Runner(tmp_path / "logs"), vmlinux, system_map) == {}
    # A cache entry kept before landmarks existed reads as none.
    assert landmarks.read(tmp_path) == {} and landmarks.read(None) == {}


def test_no_vmrun_or_two_of_them_give_no_address() -> None:
    listing = "ffffffff81000001:\tpush   %rbp\nffffffff81000005:\tvmrun\nffffffff81000008:\tmov    %rax,%rbx\n"
    assert landmarks.after_instruction(listing, "vmrun") == 0xFFFFFFFF81000008
    assert landmarks.after_instruction(listing.replace("vmrun", "vmload"), "vmrun") is None
    assert landmarks.after_instruction(listing + "ffffffff8100000b:\tvmrun\nffffffff8100000e:\tret\n", "vmrun") is None
    # VMRUN as the last instruction of the listing: nothing follows it.
    assert landmarks.after_instruction("ffffffff81000005:\tvmrun\n", "vmrun") is None
