"""Level 1's QEMU monitor: where its CPUs are when level 1 stalls.

A level-1 CPU wedged under TCG answers no NMI, so the kernel's own stall
report has no backtrace for it. QEMU still knows its registers: the lab
asks the monitor (HMP over a unix socket) for `info registers -a` and
names each RIP with the kernel's System.map.
"""

from __future__ import annotations

import bisect
import re
import socket
import time
from pathlib import Path

PROMPT = b"(qemu) "


def _read_until_prompt(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while not data.endswith(PROMPT) and time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


def hmp(path: Path, command: str, timeout: float = 10.0) -> str:
    """One HMP command's output (without the echo and prompt)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        _read_until_prompt(sock, deadline)  # banner
        sock.sendall(command.encode() + b"\n")
        out = _read_until_prompt(sock, deadline).decode(errors="replace")
    out = out.replace("\r", "")
    out = out.removesuffix(PROMPT.decode())
    # The first line is QEMU's echo of the command, full of readline escapes.
    return out.split("\n", 1)[1] if "\n" in out else ""


class SymbolMap:
    """Address -> symbol+offset from a System.map."""

    def __init__(self, system_map: Path) -> None:
        pairs = []
        for line in system_map.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tTwW":
                pairs.append((int(parts[0], 16), parts[2]))
        pairs.sort()
        self.addrs = [a for a, _ in pairs]
        self.names = [n for _, n in pairs]

    def name(self, addr: int) -> str:
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0:
            return "?"
        return f"{self.names[i]}+{addr - self.addrs[i]:#x}"


def annotate_rips(registers: str, symbols: SymbolMap | None) -> str:
    """Append `RIP=... <symbol+off>` lines after the register dump."""
    rips = re.findall(r"RIP=([0-9a-f]{16})", registers)
    if not symbols or not rips:
        return registers
    names = [f"CPU#{i}: RIP {rip} = {symbols.name(int(rip, 16))}" for i, rip in enumerate(rips)]
    return registers + "\n" + "\n".join(names) + "\n"


def dump_cpus(path: Path, dest: Path, system_map: Path | None) -> str:
    """Write every CPU's registers (named RIPs) to dest; returns a one-line summary."""
    try:
        regs = hmp(path, "info registers -a")
    except OSError as exc:
        return f"monitor unreachable: {exc}"
    symbols = SymbolMap(system_map) if system_map and system_map.exists() else None
    text = annotate_rips(regs, symbols)
    dest.write_text(text)
    named = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("CPU#") and ": RIP" in line]
    return "; ".join(named) or f"registers in {dest.name}"
