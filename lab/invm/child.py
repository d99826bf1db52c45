"""A helper process of level 1: forked to run one function, ended with SIGTERM.

Stdlib only, like the rest of lab.invm.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable


def fork_run(target: Callable[[], None]) -> int:
    """Fork a child that runs `target` (which must end with os._exit); the child's pid."""
    pid = os.fork()
    if pid == 0:
        target()
    return pid


def terminate(pid: int) -> None:
    """SIGTERM the child and reap it (one already gone is fine)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    os.waitpid(pid, 0)
