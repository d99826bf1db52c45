"""The level-1 monitor dump against a fake HMP server (no VM)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from lab import monitor
from lab.runner import Runner
from lab.vm import Level1Settings, vng_command

REGS = (
    "CPU#0\r\nRAX=0000000000000000 RIP=ffffffff81000120 RFL=00000002 CPL=0 HLT=0\r\n"
    "CPU#1\r\nRIP=ffffffff81000210 RFL=00000246 CPL=0 HLT=1\r\n"
)
# What QEMU 7.2 printed for a CPU it failed to wake (seen here), and an idle one.
LAPIC_STUCK = "dumping local APIC state for CPU 1\r\n\r\nISR\t (none)\r\nIRR\t 236 253 \r\n"
LAPIC_IDLE = "dumping local APIC state for CPU 0\r\n\r\nISR\t (none)\r\nIRR\t (none)\r\n"


def _fake_hmp(path: Path, commands: list[str], answers: dict[str, list[str]]) -> threading.Thread:
    """A monitor that answers each command with the next of its answers (stop and cont: nothing)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    snapshots = len(answers["info registers -a"])  # each: stop, registers, one lapic per CPU, cont

    def serve() -> None:
        with server:
            for _ in range(snapshots * (3 + len(answers) - 1)):
                conn, _ = server.accept()
                with conn:
                    conn.sendall(b"QEMU 7.2.0 monitor - type 'help' for more information\r\n(qemu) ")
                    cmd = conn.recv(1024).decode().strip()
                    commands.append(cmd)
                    answer = "" if cmd in ("stop", "cont") else answers[cmd].pop(0)
                    conn.sendall(cmd.encode() + b"\r\n" + answer.encode() + b"(qemu) ")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


SNAPSHOT = ["stop", "info registers -a", "info lapic 0", "info lapic 1", "cont"]
SYMBOLS = "ffffffff81000100 T svm_vcpu_run\nffffffff81000200 t native_safe_halt\nffffffff81000300 D data\n"


def test_dump_names_every_cpu_rip_and_a_cpu_qemu_did_not_wake(tmp_path: Path) -> None:
    sock = tmp_path / "mon.sock"
    commands: list[str] = []
    answers = {"info registers -a": [REGS, REGS], "info lapic 0": [LAPIC_IDLE] * 2, "info lapic 1": [LAPIC_STUCK] * 2}
    thread = _fake_hmp(sock, commands, answers)
    system_map = tmp_path / "System.map"
    system_map.write_text(SYMBOLS)
    summary = monitor.dump_cpus(sock, tmp_path / "cpus.txt", system_map, Runner(tmp_path / "logs"), recheck_after=0.1)
    thread.join(5)
    assert commands == SNAPSHOT * 2  # read with the VM stopped, twice
    assert summary.startswith("RIP ffffffff81000120 = svm_vcpu_run+0x20; RIP ffffffff81000210 = native_safe_halt+0x10")
    assert summary.endswith("CPUs [1] halted with interrupts pending (IRR [[236, 253]])")
    text = (tmp_path / "cpus.txt").read_text()
    assert "RFL=00000246" in text and "(qemu)" not in text and "\r" not in text
    assert "# info lapic 1" in text and "two snapshots 0.1 s apart): CPUs [1]" in text


def test_a_cpu_that_woke_by_the_second_snapshot_is_no_lost_wakeup(tmp_path: Path) -> None:
    sock = tmp_path / "mon.sock"
    commands: list[str] = []
    answers = {"info registers -a": [REGS, REGS], "info lapic 0": [LAPIC_IDLE] * 2, "info lapic 1": [LAPIC_STUCK, LAPIC_IDLE]}
    thread = _fake_hmp(sock, commands, answers)
    summary = monitor.dump_cpus(sock, tmp_path / "cpus.txt", None, Runner(tmp_path / "logs"), recheck_after=0.1)
    thread.join(5)
    assert "halted with interrupts pending" not in summary
    text = (tmp_path / "cpus.txt").read_text()
    assert monitor.LOST_WAKEUP_LINE not in text and "no lost wakeup" in text


def test_lost_wakeup_needs_halted_if_set_pending_and_nothing_in_service() -> None:
    halted_if = "CPU#0\nRIP=1 RFL=00000246 HLT=1\n"
    assert monitor.lost_wakeups(halted_if, [LAPIC_STUCK]) == [0]
    assert monitor.lost_wakeups(halted_if, [LAPIC_IDLE]) == []  # nothing pending: a plain idle CPU
    assert monitor.lost_wakeups("CPU#0\nRIP=1 RFL=00000046 HLT=1\n", [LAPIC_STUCK]) == []  # IF clear: masked
    assert monitor.lost_wakeups("CPU#0\nRIP=1 RFL=00000246 HLT=0\n", [LAPIC_STUCK]) == []  # running
    serving = LAPIC_STUCK.replace("ISR\t (none)", "ISR\t 236")
    assert monitor.lost_wakeups(halted_if, [serving]) == []  # in service: lower ones wait for its EOI
    assert monitor.lapic_vectors(LAPIC_STUCK, "IRR") == [236, 253]
    with_ppr = LAPIC_STUCK + "APR 0x00 TPR 0x10 DFR 0x0f LDR 0x00 PPR 0x10\r\n"
    assert monitor.lost_wakeups(halted_if, [with_ppr]) == [0]  # 236 is above priority class 1
    masked = LAPIC_STUCK.replace("236 253", "20") + "APR 0x00 TPR 0x10 DFR 0x0f LDR 0x00 PPR 0x10\r\n"
    assert monitor.lost_wakeups(halted_if, [masked]) == []  # vector 20 is masked by the priority


def test_unreachable_monitor_is_reported_not_raised(tmp_path: Path) -> None:
    assert monitor.dump_cpus(tmp_path / "absent.sock", tmp_path / "cpus.txt", None, Runner(tmp_path / "logs")).startswith(
        "monitor unreachable"
    )


def test_level1_gets_a_monitor_socket(tmp_path: Path) -> None:
    cmd = vng_command("vng", tmp_path / "bzImage", "tcg", Level1Settings(), "true", [], tmp_path / "m.sock")
    assert f"--qemu-opts=-monitor unix:{tmp_path / 'm.sock'},server=on,wait=off" in cmd


def test_qemu_threads_and_backtraces_of_a_real_process(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    import pytest

    marker = tmp_path / "pvsched-lab-l1-monitor-test.sock"
    # A stand-in for QEMU: a process called qemu-* whose command line names the monitor socket.
    fake_qemu = tmp_path / "qemu-system-x86_64"
    fake_qemu.symlink_to(sys.executable)
    child = subprocess.Popen([str(fake_qemu), "-c", "import time; time.sleep(30)", str(marker)])
    # vng, which started QEMU, has the socket on its command line too.
    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", str(marker)])
    try:
        # Until the stand-in sleeps: a loaded machine was still starting it after 0.2 s (state R).
        deadline = time.monotonic() + 20
        while "state S" not in monitor.qemu_threads(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert monitor.qemu_pid(marker) == child.pid
        assert monitor.qemu_pid(tmp_path / "other.sock") is None
        threads = monitor.qemu_threads(child.pid)
        assert threads.startswith(f"{child.pid} 'qemu-system-x86' state S wchan ")
        if not shutil.which("gdb"):
            pytest.skip("gdb not installed")
        trace = monitor.qemu_backtraces(child.pid, Runner(tmp_path / "logs"))
        assert f"gdb -p {child.pid}" in trace and "nanosleep" in trace
    finally:
        for proc in (child, launcher):
            proc.kill()
            proc.wait()
