"""QEMU's QMP from level 1: one command per connection. Stdlib only.

Every level-2 QEMU has a QMP socket: the lab's own ones where a check
drives the guest, a diagnostic one otherwise, through which a guest that
stopped making progress shows its vCPUs' registers (what KVM holds for
them) before it is killed.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

_diagnostic = itertools.count()
# "-qmp unix:/tmp/lab-kvm.sock,server=on,wait=off" in a QEMU command line
_SOCKET = re.compile(r"^unix:([^,]+)")


def diagnostic_socket() -> Path:
    """A fresh path for a guest's diagnostic QMP socket (unique in this process)."""
    path = Path(f"/tmp/lab-l2-diag-{os.getpid()}-{next(_diagnostic)}.sock")
    path.unlink(missing_ok=True)
    return path


class Connection:
    """One QMP connection, capabilities negotiated: commands answered in
    turn, the asynchronous events that come between kept for `event()`."""

    def __init__(self, sock_path: Path, connect_s: float = 10.0, io_timeout: float | None = 5.0) -> None:
        """Waits up to `connect_s` for QEMU to open the socket; `io_timeout`
        bounds each read (None: a read waits for QEMU as long as it takes)."""
        deadline = time.monotonic() + connect_s
        while True:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.settimeout(io_timeout)
            try:
                self._sock.connect(str(sock_path))
                break
            except OSError:
                self._sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._file = self._sock.makefile("rw")
        self._events: list[dict[str, Any]] = []
        self._read()  # the greeting
        self.command("qmp_capabilities")

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()
        self._sock.close()

    def _read(self) -> dict[str, Any] | None:
        line = self._file.readline()
        return json.loads(line) if line else None

    def command(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        """`name`'s return value; OSError if QEMU refuses it or goes away."""
        self._file.write(json.dumps({"execute": name, **({"arguments": arguments} if arguments else {})}) + "\n")
        self._file.flush()
        while True:
            reply = self._read()
            if reply is None:
                raise OSError(f"QMP {name}: QEMU closed the socket")
            if "error" in reply:
                raise OSError(f"QMP {name}: {reply['error'].get('desc', reply['error'])}")
            if "return" in reply:
                return reply["return"]
            if "event" in reply:
                self._events.append(reply)

    def event(self) -> dict[str, Any] | None:
        """The next event (waiting for it), None once QEMU closed the socket."""
        if self._events:
            return self._events.pop(0)
        while (msg := self._read()) is not None and "event" not in msg:
            pass
        return msg


def execute(sock_path: Path, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    """`command`'s return value; OSError if QEMU cannot be reached or refuses it."""
    with Connection(sock_path, connect_s=timeout) as qmp:
        return qmp.command(command, arguments)


def socket_of(pid: int) -> Path | None:
    """The QMP socket QEMU `pid` serves, from its command line."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    for flag, value in itertools.pairwise(args):
        if flag == "-qmp" and (m := _SOCKET.match(value)):
            return Path(m[1])
    return None


def registers(sock_path: Path) -> str:
    """Every vCPU's registers as QEMU's monitor prints them (`info registers -a`)."""
    return str(execute(sock_path, "human-monitor-command", {"command-line": "info registers -a"}, timeout=5.0))


_CPU = re.compile(r"^CPU#(\d+)", re.M)
# 64-bit mode prints RIP and RSP, 32-bit and real mode EIP and ESP.
_REGS = [re.compile(rf"\b({name})=([0-9a-f]+)") for name in ("[RE]IP", "[RE]SP", "CR3")]


def summary(dump: str) -> str:
    """'vCPU 0 RIP=... RSP=... CR3=...; vCPU 1 ...' from an `info registers -a` dump."""
    starts = [(m.start(), m[1]) for m in _CPU.finditer(dump)] or [(0, "?")]
    parts = []
    for (at, cpu), (end, _) in zip(starts, [*starts[1:], (len(dump), "")], strict=True):
        block = dump[at:end]
        regs = " ".join(f"{m[1]}={m[2]}" for rx in _REGS if (m := rx.search(block)))
        parts.append(f"vCPU {cpu} {regs}".strip())
    return "; ".join(parts)
