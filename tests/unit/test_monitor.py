"""The level-1 monitor dump against a fake HMP server (no VM)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from lab import monitor
from lab.vm import Level1Settings, vng_command

REGS = "CPU#0\r\nRAX=0000000000000000 RIP=ffffffff81000120 RFL=00000002\r\nCPU#1\r\nRIP=ffffffff81000210 RFL=00000246\r\n"


def _fake_hmp(path: Path, commands: list[str]) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            conn.sendall(b"QEMU 7.2.0 monitor - type 'help' for more information\r\n(qemu) ")
            cmd = conn.recv(1024).decode().strip()
            commands.append(cmd)
            conn.sendall(cmd.encode() + b"\r\n" + REGS.encode() + b"(qemu) ")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_dump_names_every_cpu_rip(tmp_path: Path) -> None:
    sock = tmp_path / "mon.sock"
    commands: list[str] = []
    thread = _fake_hmp(sock, commands)
    system_map = tmp_path / "System.map"
    system_map.write_text("ffffffff81000100 T svm_vcpu_run\nffffffff81000200 t native_safe_halt\nffffffff81000300 D data\n")
    summary = monitor.dump_cpus(sock, tmp_path / "cpus.txt", system_map)
    thread.join(5)
    assert commands == ["info registers -a"]
    assert summary == "RIP ffffffff81000120 = svm_vcpu_run+0x20; RIP ffffffff81000210 = native_safe_halt+0x10"
    text = (tmp_path / "cpus.txt").read_text()
    assert "RFL=00000246" in text and "(qemu)" not in text and "\r" not in text


def test_unreachable_monitor_is_reported_not_raised(tmp_path: Path) -> None:
    assert monitor.dump_cpus(tmp_path / "absent.sock", tmp_path / "cpus.txt", None).startswith("monitor unreachable")


def test_level1_gets_a_monitor_socket(tmp_path: Path) -> None:
    cmd = vng_command(tmp_path / "bzImage", "tcg", Level1Settings(), "true", [], tmp_path / "m.sock")
    assert f"--qemu-opts=-monitor unix:{tmp_path / 'm.sock'},server=on,wait=off" in cmd
