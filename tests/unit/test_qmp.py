"""Level 1's QMP client: commands, events, errors; a stalled guest's registers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab.invm import qmp
from lab.invm.level2 import qemu_command

# The shape of QEMU's `info registers -a` (two vCPUs, fields trimmed).
DUMP = """CPU#0
RAX=0000000000000000 RBX=ffff888004a1c000 RCX=0000000000000000 RDX=0000000000000000
RSI=0000000000000000 RDI=0000000000000000 RBP=ffffc90000603d38 RSP=ffffc90000603d10
RIP=ffffffff81512aa0 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0
CR0=80050033 CR2=0000000000000000 CR3=000000010a2f6000 CR4=00350ef0
CPU#1
RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000001 RDX=0000000000000000
RSI=0000000000000087 RDI=0000000000000000 RBP=0000000000000000 RSP=ffffffff82603e80
RIP=ffffffff81e40b9e RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
CR0=80050033 CR2=00007f1c2d5e8000 CR3=0000000002c10000 CR4=00350ef0
"""


def _server(path: Path, replies: list[dict[str, object]], seen: list[dict[str, object]]) -> threading.Thread:
    """A one-connection QMP server: greeting, then `replies` in turn, one per command read."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rw") as f:
            f.write(json.dumps({"QMP": {"version": {}, "capabilities": []}}) + "\n")
            f.flush()
            for reply in replies:
                seen.append(json.loads(f.readline()))
                if "return" in reply:
                    f.write(json.dumps({"event": "RTC_CHANGE", "data": {}}) + "\n")  # an event comes first
                f.write(json.dumps(reply) + "\n")
                f.flush()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_command_returns_its_value_past_events(tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []
    thread = _server(tmp_path / "q.sock", [{"return": {}}, {"return": DUMP}], seen)
    assert qmp.registers(tmp_path / "q.sock") == DUMP
    thread.join(5)
    assert seen[1] == {"execute": "human-monitor-command", "arguments": {"command-line": "info registers -a"}}


def test_a_refused_command_is_an_error(tmp_path: Path) -> None:
    _server(tmp_path / "q.sock", [{"return": {}}, {"error": {"class": "GenericError", "desc": "no such command"}}], [])
    with pytest.raises(OSError, match="no such command"):
        qmp.execute(tmp_path / "q.sock", "query-nothing")


def test_the_summary_names_each_vcpus_rip_stack_and_page_table() -> None:
    assert qmp.summary(DUMP) == (
        "vCPU 0 RIP=ffffffff81512aa0 RSP=ffffc90000603d10 CR3=000000010a2f6000; "
        "vCPU 1 RIP=ffffffff81e40b9e RSP=ffffffff82603e80 CR3=0000000002c10000"
    )


def test_the_summary_reads_a_vcpu_outside_long_mode_too() -> None:
    real_mode = "CPU#0\r\nEAX=00000000 EBX=00000000\r\nESI=0000b79d EDI=00000000 EBP=0000b79d ESP=00006f94\r\n"
    real_mode += "EIP=0000b7b9 EFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\r\nCR0=00000010 CR2=00000000 CR3=00000000\r\n"
    assert qmp.summary(real_mode) == "vCPU 0 EIP=0000b7b9 ESP=00006f94 CR3=00000000"


def test_every_guest_has_a_qmp_socket_found_from_its_command_line(tmp_path: Path) -> None:
    cfg = {"qemu": "qemu-system-x86_64", "guest_cpus": 2, "guest_mem_mb": 256, "guest_kernel": "bzImage", "guest_initramfs": "i"}
    cmd = qemu_command(cfg, "kvm")
    other = qemu_command(cfg, "kvm")
    sock = cmd[cmd.index("-qmp") + 1]
    assert sock.startswith("unix:/tmp/lab-l2-diag-") and sock != other[other.index("-qmp") + 1]
    mine = qemu_command(cfg, "kvm", qmp=tmp_path / "lab.sock")
    assert mine[mine.index("-qmp") + 1] == f"unix:{tmp_path / 'lab.sock'},server=on,wait=off"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-qmp", f"unix:{tmp_path / 'x.sock'},server=on"])
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{proc.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)  # the child has not exec'd yet
        assert qmp.socket_of(proc.pid) == tmp_path / "x.sock"
    finally:
        proc.kill()
        proc.wait()
    assert qmp.socket_of(2**22 + 12345) is None
