"""Whether a level-2 guest died right where level 1 had just resumed it.

Level 1's KVM resumes a guest after an exit at the next instruction: after
`out` to the serial port, an x2APIC EOI `wrmsr`, a `pause` of a spinning
lock. A triple fault of the guest at that very address, with no oops before
it, is the `guest-resumed-past-exit` sign (lab.emulator_faults): the guest
could not take one exception on an instruction it had not yet run, as if
its state had come back from VMRUN broken. Seen on the unpatched kernel
(the emulator control's base-girq cell).

The guest's kernel comes from the attempt's level1-config.json; its text
from its bzImage (lab.bzimage), disassembled with objdump from the start of
the function that holds the address.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lab import bzimage, landmarks
from lab.runner import Runner
from lab.symbols import SymbolMap

# Instructions that exit from a guest to level 1's KVM, which then resumes
# the guest past them (port I/O, MSRs KVM intercepts, pause-loop exits, ...).
EXITING = frozenset({"in", "out", "ins", "outs", "insb", "outsb", "wrmsr", "rdmsr", "pause", "hlt", "cpuid",
                     "vmmcall", "vmcall", "xsetbv", "wbinvd", "invd", "rdpmc", "monitor", "mwait"})  # fmt: skip
# The decompressed bzImage payload (vmlinux.bin: ELF, no symbols), kept beside it.
ELF_NAME = "vmlinux.bin"


def instruction_before(listing: str, address: int) -> str | None:
    """The mnemonic of the instruction that ends at `address` in an objdump
    listing decoded from before it; None if no instruction starts there."""
    insns = landmarks.instructions(listing)
    for (_, name), (start, _) in zip(insns, insns[1:], strict=False):
        if start == address:
            return name
    return None


def function_start(system_map: Path, address: int) -> int | None:
    """The start of the text symbol that holds `address`."""
    return SymbolMap(system_map).start(address)


def _decompressed(kernel: Path) -> Path:
    """The kernel's ELF text beside its bzImage in the cache (written once, renamed into place)."""
    elf = kernel.with_name(ELF_NAME)
    if not elf.exists():
        tmp = elf.with_name(f".{ELF_NAME}.{os.getpid()}")
        tmp.write_bytes(bzimage.payload(kernel.read_bytes()))
        os.replace(tmp, elf)
    return elf


class GuestText:
    """The text of an attempt's level-2 kernel, decompressed once when asked."""

    def __init__(self, runner: Runner, attempt_dir: Path) -> None:
        self.runner, self.attempt_dir = runner, attempt_dir
        self._elf: Path | None = None

    def _kernel(self) -> tuple[Path, Path] | None:
        config = self.attempt_dir / "level1-config.json"
        if not config.exists():
            return None
        kernel = Path(str(json.loads(config.read_text()).get("guest_kernel", "")))
        system_map = kernel.parent / "System.map"
        return (kernel, system_map) if kernel.is_file() and system_map.is_file() else None

    def exit_before(self, address: int) -> str | None:
        """The exiting instruction right before `address` in the guest kernel, or None."""
        kernel = self._kernel()
        if kernel is None:
            return None
        start = function_start(kernel[1], address)
        if start is None or address - start > 0x10000:
            return None
        if self._elf is None:
            try:
                self._elf = _decompressed(kernel[0])
            except (OSError, ValueError):
                return None  # no text to read: no sign, the failure stands
        listing = self.runner.run(
            ["objdump", "-d", "--no-show-raw-insn", f"--start-address={start:#x}", f"--stop-address={address + 16:#x}", str(self._elf)],
            f"disassemble the guest kernel up to {address:#x}",
            check=False,
        ).output
        name = instruction_before(listing, address)
        return name if name in EXITING else None
