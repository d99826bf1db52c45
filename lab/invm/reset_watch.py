"""Holds a level-2 guest's memory for a look when it triple-faults.

A guest started with QEMU's `-action shutdown=pause` (beside -no-reboot)
stops instead of exiting at any shutdown: its own reset (a triple fault),
its power off, or a signal to QEMU. This thread holds a QMP connection of
its own to it; at the SHUTDOWN event it walks the guest's page tables for
the addresses the shutdown probe recorded (lab.invm.page_walk), when the
cause is a reset, and then quits QEMU, which exits 0 as it did without the
pause. So what a run sees of the guest is unchanged, plus the walk.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from lab.invm import page_walk, shutdown_trace

QEMU_ARGS = ("-action", "shutdown=pause")
CONNECT_S = 30.0  # QEMU opens its sockets before the guest runs; this covers a slow start


class ResetWatch(threading.Thread):
    def __init__(self, sock: Path, trace: Path | None, record: Path, on_lost: Callable[[], None]) -> None:
        """`on_lost` ends QEMU when this thread cannot: a guest paused with
        nobody to quit it would stay in KVM and pass for a live one."""
        super().__init__(name=f"reset-watch {sock.name}", daemon=True)
        self.sock, self.trace, self.record, self.on_lost = sock, trace, record, on_lost
        self.summary = ""  # the walk, for the guest's error ("" if there was none)
        self.reset = threading.Event()  # the guest reset itself (a triple fault)
        self.error = ""

    def run(self) -> None:
        try:
            with self._connect() as s, s.makefile("rw") as f:
                self._command(f, "qmp_capabilities")
                while True:
                    msg = self._read(f)
                    if msg is None:
                        return  # QEMU is gone
                    if msg.get("event") == "SHUTDOWN":
                        if msg.get("data", {}).get("reason") == "guest-reset":
                            self.reset.set()
                            self._look(f)
                        self._command(f, "quit")
                        return
        except (OSError, ValueError) as exc:
            self.error = f"reset watch: {exc}"
            self.on_lost()

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + CONNECT_S
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(self.sock))
                return s
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @staticmethod
    def _read(f: TextIO) -> dict[str, Any] | None:
        line = f.readline()
        return json.loads(line) if line else None

    def _command(self, f: TextIO, name: str, arguments: dict[str, Any] | None = None) -> Any:
        f.write(json.dumps({"execute": name, **({"arguments": arguments} if arguments else {})}) + "\n")
        f.flush()
        while True:
            reply = self._read(f)
            if reply is None:
                raise OSError(f"QMP {name}: QEMU closed the socket")
            if "error" in reply:
                raise OSError(f"QMP {name}: {reply['error'].get('desc', reply['error'])}")
            if "return" in reply:
                return reply["return"]
            # the greeting or an event: not the reply

    def _look(self, f: TextIO) -> None:
        """The walk of the probed state's addresses, in `record` and `summary`."""
        state = self._probed_state()
        if not state:
            self.summary = "no probed state to walk"
            return

        def read_u64(gpa: int) -> int:
            out = self._command(f, "human-monitor-command", {"command-line": f"xp /1gx {gpa:#x}"})
            return page_walk.parse_xp(str(out), gpa)

        found = page_walk.walks(read_u64, state)
        self.record.write_text(f"state: {state}\n" + "".join(f"{w.describe()}\n" for w in found))
        self.summary = ", ".join(w.brief() for w in found) if found else "nothing to walk"

    def _probed_state(self) -> str:
        """The last shutdown exit's state in the trace, left in the buffer for shutdown_witness."""
        if self.trace is None:
            return ""
        try:
            exits = shutdown_trace.parse((self.trace / "trace").read_text())
        except OSError:
            return ""
        with_state = [e for e in exits if e.state]
        return with_state[-1].state if with_state else ""
