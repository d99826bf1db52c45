"""Failure marks in level 1's kernel log. Stdlib only: level 1 imports it.

Level 1 writes a line to /dev/kmsg when a check fails and when a level-2
guest starts, so the kernel log orders the lab's verdicts among the
kernel's own messages: the host can then tell whether an emulator sign
came before the failure it would excuse (lab.attempts). Err level, so the
line also reaches a console that prints only errors.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab.protocol import FAILED, LEVEL2_BEGIN

__all__ = ["FAILED", "LEVEL2_BEGIN", "failed", "level2_begins"]

KMSG = Path("/dev/kmsg")


def _write(text: str) -> None:
    # One write(2), no seek: /dev/kmsg takes each write as a record and
    # refuses the lseek(SEEK_CUR) a Python text file makes (ESPIPE).
    try:
        fd = os.open(KMSG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"<3>{text}\n".encode())
        finally:
            os.close(fd)
    except OSError:
        print(f"{text} (not in the kernel log: /dev/kmsg not writable)", flush=True)


def failed(level: str, name: str) -> None:
    """`level/name` failed now."""
    _write(f"{FAILED} {level}/{name}")


def level2_begins(console_name: str) -> None:
    """A level-2 guest whose console is `console_name` starts now."""
    _write(f"{LEVEL2_BEGIN} {console_name}")
