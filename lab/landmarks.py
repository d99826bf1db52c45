"""Addresses in a built kernel that a sign of the emulator needs and System.map
does not give: the instruction right after VMRUN in KVM's `__svm_vcpu_run`
(where level 1 resumes when its guest exits). Found with objdump on the
build's vmlinux and kept beside System.map in the kernel's cache entry."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lab.runner import Runner

FILE = "landmarks.json"
VMRUN_RETURN = "vmrun_return"
VMRUN_FUNCTION = "__svm_vcpu_run"
# "ffffffff81e8d20d:\tvmrun  %rax", "...:\tlock cmpxchg %edx,(%rbx)" (objdump -d --no-show-raw-insn)
_INSN = re.compile(r"^\s*([0-9a-f]+):\s+(?:(?:rep|repz|repnz|lock)\s+)?([a-z][a-z0-9]*)")


def function_range(system_map: Path, name: str) -> tuple[int, int] | None:
    """[start, end) of a text symbol: from its address to the next higher one."""
    addrs = []
    start = None
    for line in system_map.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16))
            if parts[2] == name:
                start = int(parts[0], 16)
    if start is None:
        return None
    end = min((a for a in addrs if a > start), default=None)
    return (start, end) if end is not None else None


def instructions(disassembly: str) -> list[tuple[int, str]]:
    """(address, mnemonic) of each instruction in an objdump listing, prefixes dropped."""
    return [(int(m[1], 16), m[2]) for line in disassembly.splitlines() if (m := _INSN.match(line))]


def after_instruction(disassembly: str, mnemonic: str) -> int | None:
    """The address of the instruction after the only `mnemonic` in an objdump
    listing; None if there is none or more than one (then it is ambiguous)."""
    insns = instructions(disassembly)
    at = [i for i, (_, name) in enumerate(insns) if name == mnemonic]
    if len(at) != 1 or at[0] + 1 >= len(insns):
        return None
    return insns[at[0] + 1][0]


def find(runner: Runner, vmlinux: Path, system_map: Path) -> dict[str, int]:
    """The landmarks this kernel has ({} for a kernel without KVM's SVM code built in)."""
    span = function_range(system_map, VMRUN_FUNCTION)
    if span is None:
        return {}
    listing = runner.run(
        ["objdump", "-d", "--no-show-raw-insn", f"--start-address={span[0]:#x}", f"--stop-address={span[1]:#x}", str(vmlinux)],
        f"disassemble {VMRUN_FUNCTION}",
    ).output
    found = after_instruction(listing, "vmrun")
    return {VMRUN_RETURN: found} if found is not None else {}


def write(entry: Path, landmarks: dict[str, int]) -> None:
    (entry / FILE).write_text(json.dumps({k: f"{v:#x}" for k, v in landmarks.items()}, indent=2) + "\n")


def read(entry: Path | None) -> dict[str, int]:
    """The landmarks kept in a kernel's cache entry ({} for one built before they were)."""
    path = entry / FILE if entry is not None else None
    if path is None or not path.exists():
        return {}
    return {k: int(v, 16) for k, v in json.loads(path.read_text()).items()}
