"""The kernel's own sched_ext example scheduler (tools/sched_ext/scx_simple),
attached in level 1 for the emulator control's `base-scx` cell: sched_ext on
the unpatched kernel, with none of our code. Stdlib only, like level1.py."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

from lab.invm.pvsched_host import await_scx_state, scx_state
from lab.runner import Background, Runner


@dataclass
class ScxExample:
    runner: Runner
    binary: str
    proc: Background | None = None

    def start(self, timeout: float = 60.0) -> str:
        """Attach it (`-f`: one FIFO queue, as our scx policy's normal queue);
        returns "" once sched_ext says enabled, else why not."""
        self.proc = self.runner.start([self.binary, "-f"], f"sched_ext example {Path(self.binary).name}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if scx_state() == "enabled":
                return ""
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        state = scx_state()
        self.proc.stop(signal.SIGKILL)
        return f"sched_ext state {state} after {timeout:.0f} s: {self.proc.output[-300:]}"

    def stop(self) -> str:
        """Detach it (SIGTERM: it unregisters and exits); returns the state sched_ext is left in."""
        proc = self.proc
        if proc is not None and proc.poll() is None and proc.stop(signal.SIGTERM, grace=30) is None:
            print(f"scx example {proc.pid} survives SIGKILL", flush=True)
        return await_scx_state(("disabled", "unavailable"), 10)
