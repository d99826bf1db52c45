"""What level 1 is doing, printed to its console while a run takes long.

Stdlib only: it runs inside level 1.  A run that hangs there is killed from
outside and leaves only its console, so every `period` seconds this prints
the lab's Python stacks and every user process's state and kernel wait
channel (a qemu stuck in KVM shows as state D with its wchan).
"""

from __future__ import annotations

import faulthandler
import sys
import threading
from pathlib import Path
from typing import TextIO

from lab.protocol import WEDGED
from lab.runner import reap_overdue, state_and_wchan, survivors

__all__ = ["WEDGED"]


def process_table(proc: Path = Path("/proc")) -> list[str]:
    """'pid state wchan cmdline' for every process with a command line (kernel threads have none)."""
    rows = []
    for entry in sorted(proc.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # it exited while we looked
        found = state_and_wchan(entry) if cmdline else None
        if found is None:
            continue
        rows.append(f"{entry.name:>7} {found[0]} {found[1]:<24} {cmdline[:160]}")
    return rows


def report(out: TextIO, uptime: str) -> None:
    out.write(f"LAB-WATCHDOG level 1 still running at uptime {uptime} s; Python stacks:\n")
    out.flush()
    faulthandler.dump_traceback(file=out, all_threads=True)
    out.write("LAB-WATCHDOG processes (pid state wchan cmdline):\n")
    out.write("\n".join(process_table()) + "\n")
    out.flush()


HEARTBEAT = "LAB-HEARTBEAT"
# Printed when a killed command is still alive this long past its timeout:
# level 1 cannot recover, and the host stops it at once (lab.vm) instead of
# waiting out the whole run timeout (seen in CI: 15 minutes lost).
SURVIVOR_AFTER_S = 150.0


def start(period: float, beat: float = 60.0) -> threading.Event:
    """A heartbeat line every `beat` seconds and a full report every `period`,
    until the returned event is set. The host kills a level 1 whose console
    stays silent much longer than a beat (lab.vm.SILENCE_KILL_S)."""
    stop = threading.Event()

    def loop() -> None:
        waited = 0.0
        told: set[int] = set()  # pids already reported wedged
        while not stop.wait(beat):
            waited += beat
            uptime = Path("/proc/uptime").read_text().split()[0]
            for what in reap_overdue():
                # Its own timer did not fire: it sleeps on a CPU that stopped
                # taking interrupts (seen here under TCG). The kill's wakeups
                # also poke that CPU.
                print(f"LAB-WATCHDOG killed {what}: its timeout did not fire", flush=True)
            for pid, what in survivors(SURVIVOR_AFTER_S).items():
                if pid not in told:
                    told.add(pid)
                    print(f"{WEDGED} {what}; a level-1 CPU is stuck", flush=True)
            if waited >= period:
                waited = 0.0
                report(sys.stdout, uptime)
            else:
                print(f"{HEARTBEAT} {uptime}", flush=True)

    threading.Thread(target=loop, name="lab watchdog", daemon=True).start()
    return stop
