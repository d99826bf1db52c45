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

import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from lab.invm import kernel_peek, page_walk, qmp, shutdown_trace

QEMU_ARGS = ("-action", "shutdown=pause")
CONNECT_S = 30.0  # QEMU opens its sockets before the guest runs; this covers a slow start


class _Nested(NamedTuple):
    brief: str  # for the guest's error line
    detail: str  # for the walk's record


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
            with qmp.Connection(self.sock, connect_s=CONNECT_S, io_timeout=None) as conn:
                while (msg := conn.event()) is not None:
                    if msg["event"] == "SHUTDOWN":
                        if msg.get("data", {}).get("reason") == "guest-reset":
                            self.reset.set()
                            self._look(conn)
                        conn.command("quit")
                        return
        except (OSError, ValueError) as exc:
            self.error = f"reset watch: {exc}"
            self.on_lost()

    def walked(self) -> str:
        """'; its page walk: ...' once QEMU has ended ('' when no walk was read)."""
        self.join(10)  # it quits QEMU right after the walk
        return f"; its page walk: {self.summary}" if self.summary else ""

    def _look(self, conn: qmp.Connection) -> None:
        """The walk of the probed state's addresses, in `record` and `summary`."""
        state = self._probed_state()
        if not state:
            self.summary = "no probed state to walk"
            return

        def read_u64(gpa: int) -> int:
            out = conn.command("human-monitor-command", {"command-line": f"xp /1gx {gpa:#x}"})
            return page_walk.parse_xp(str(out), gpa)

        found = page_walk.walks(read_u64, state)
        nested = self._nested(read_u64, state, found)
        self.record.write_text(f"state: {state}\n" + "".join(f"{w.describe()}\n" for w in found) + nested.detail)
        self.summary = (", ".join(w.brief() for w in found) if found else "nothing to walk") + nested.brief

    def _nested(self, read_guest: Callable[[int], int], state: str, found: list[page_walk.Walk]) -> _Nested:
        """The same words read through level 1's nested tables (N_CR3): whether
        the emulated CPU was given the tables QEMU's memory of the guest holds."""
        ncr3 = page_walk.probe_fields(state).get("ncr3")
        if ncr3 is None or self.trace is None or not found:
            return _Nested("", "")
        try:
            peek = kernel_peek.KernelPeek(self.trace)
        except OSError as exc:
            return _Nested(f"; level 1's nested tables unread: {exc}", f"nested: unread: {exc}\n")
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
            reads = page_walk.nested_reads(read_guest, peek.read_u64, ncr3, found, page_walk.physical_bits(cpuinfo))
        finally:
            peek.close()
        return _Nested(f"; {page_walk.nested_summary(reads)}", "".join(f"nested {r.describe()}\n" for r in reads))

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
