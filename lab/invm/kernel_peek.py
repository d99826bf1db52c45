"""Level 1's own memory at a physical address, for a post-mortem look.

Level 1's kernel has neither /dev/mem nor /proc/kcore, but a kprobe event
can fetch kernel memory at a fixed address (`@ADDR`, read without faulting;
a number fetched from an unmapped address reads as 0, so only addresses
known to be RAM, as a page walk's are, are worth reading). One such event
on getppid(2), in a trace instance of its own so the shutdown trace's
buffer stays as it is, reads through the kernel's direct map of physical
memory: define the event, enable it, call getppid, read its line, remove
it. Milliseconds a read (2 s for the seven reads of a test in level 1,
TCG): for the few hundred words of a page walk, not for more.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

EVENT = "lab_peek"
SITE = "__x64_sys_getppid"
INSTANCE = "lab-peek"
# x86-64's direct map with 4-level paging and no KASLR (the lab's kernels:
# RANDOMIZE_BASE off); a kernel with page_offset_base has it read from there.
DIRECT_MAP = 0xFFFF_8880_0000_0000
_VALUE = re.compile(EVENT + r": \([^)]*\) v=(\S+)")


class KernelPeek:
    def __init__(self, tracefs: Path, kallsyms: Path = Path("/proc/kallsyms")) -> None:
        self.tracefs = tracefs
        self.instance = tracefs / "instances" / INSTANCE
        self.instance.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            # An event left by a look that was cut short would refuse the next definition.
            _append(tracefs / "kprobe_events", f"-:lab/{EVENT}")
        self.direct_map = DIRECT_MAP
        if _has_symbol(kallsyms, "page_offset_base"):
            self.direct_map = self._fetch("@page_offset_base")

    def read_u64(self, physical: int) -> int:
        """8 bytes of level 1's memory at `physical`; OSError if unreadable."""
        return self._fetch(f"@{self.direct_map + physical:#x}")

    def close(self) -> None:
        """The instance goes (the event is removed after each read)."""
        with contextlib.suppress(OSError):
            self.instance.rmdir()

    def _fetch(self, where: str) -> int:
        _append(self.tracefs / "kprobe_events", f"p:lab/{EVENT} {SITE} v={where}:x64")
        enable = self.instance / "events" / "lab" / EVENT / "enable"
        try:
            (self.instance / "trace").write_text("")
            enable.write_text("1\n")
            os.getppid()
            enable.write_text("0\n")
            text = (self.instance / "trace").read_text()
        finally:
            with contextlib.suppress(OSError):
                enable.write_text("0\n")  # a removed event must be off everywhere
            _append(self.tracefs / "kprobe_events", f"-:lab/{EVENT}")
        return parse(text, where)


def parse(trace: str, where: str) -> int:
    """The value the peek event printed; OSError if it faulted or never fired."""
    m = _VALUE.search(trace)
    if not m:
        raise OSError(f"no {EVENT} line for {where}")
    try:
        return int(m[1], 0)
    except ValueError:
        raise OSError(f"{where}: {m[1]}") from None


def _append(path: Path, line: str) -> None:
    # O_APPEND without Python's "a" mode, whose seek to the end tracefs refuses (EINVAL).
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def _has_symbol(kallsyms: Path, name: str) -> bool:
    try:
        return any(line.split()[2:3] == [name] for line in kallsyms.read_text().splitlines())
    except OSError:
        return False
