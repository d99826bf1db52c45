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
import time
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


# The lab's main thread in level 1 sleeps at most a few seconds at a time
# (polls of 0.005-1 s); asleep in a timed sleep this long without once
# running, its timer did not fire: seen in CI, a reboot check's 0.2 s poll
# that slept 23 minutes while the watchdog, on the other CPU, kept beating;
# and in stress run 1126, a guest's console poll (a 0.1 s Event.wait, a
# timed futex) that slept 10 minutes while a level-1 CPU ran level 2.
MAIN_STALL_S = 120.0
# A futex wait this far past its deadline: its timer did not fire.
FUTEX_OVERDUE_S = 10.0
# Wait channels of a timed sleep (time.sleep: clock_nanosleep).
TIMED_SLEEP_WCHANS = ("hrtimer_nanosleep", "do_nanosleep", "hrtimer_wakeup")


FUTEX_SYSCALL = 202  # x86-64
FUTEX_CMD_MASK, FUTEX_WAIT_BITSET, FUTEX_CLOCK_REALTIME = 0x7F, 9, 0x100


def futex_overdue(task: Path, now_mono: float | None = None, now_real: float | None = None) -> float | None:
    """How many seconds ago a thread's futex() wait should have timed out, or
    None (not in futex(), no timeout, or a relative one: FUTEX_WAIT's,
    which says nothing of when it began). A Python wait with a timeout
    (Event.wait(0.1)) sleeps here with an absolute deadline
    (FUTEX_WAIT_BITSET), read from the thread's memory."""
    try:
        fields = (task / "syscall").read_text().split()
        if len(fields) < 5 or fields[0] != str(FUTEX_SYSCALL) or int(fields[4], 16) == 0:
            return None
        op = int(fields[2], 16)
        if op & FUTEX_CMD_MASK != FUTEX_WAIT_BITSET:
            return None
        with open(task.parent.parent / "mem", "rb") as mem:
            mem.seek(int(fields[4], 16))
            deadline = mem.read(16)
    except (OSError, ValueError):
        return None
    if len(deadline) < 16:
        return None
    sec, nsec = int.from_bytes(deadline[:8], "little", signed=True), int.from_bytes(deadline[8:], "little", signed=True)
    if op & FUTEX_CLOCK_REALTIME:
        now = time.time() if now_real is None else now_real
    else:
        now = time.monotonic() if now_mono is None else now_mono
    return now - (sec + nsec / 1e9)


def context_switches(task: Path) -> int | None:
    """How often a thread has been switched out so far (it changes whenever it runs), None once it is gone."""
    try:
        status = (task / "status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    try:
        return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])
    except (KeyError, ValueError):
        return None


class MainThreadWatch:
    """Whether a thread has slept in a timed sleep for MAIN_STALL_S without running."""

    def __init__(self, task: Path, stall_after: float = MAIN_STALL_S) -> None:
        self.task, self.stall_after = task, stall_after
        self.switches: int | None = None
        self.since = 0.0
        self.told = False

    def check(self, now: float) -> str:
        """A report the first time the thread is found stalled, else ''."""
        switches = context_switches(self.task)
        if switches is None or switches != self.switches:
            self.switches, self.since = switches, now
            return ""
        found = state_and_wchan(self.task)
        if self.told or found is None or now - self.since < self.stall_after:
            return ""
        state, wchan = found
        overdue = futex_overdue(self.task)
        if state != "S" or not (wchan in TIMED_SLEEP_WCHANS or (overdue is not None and overdue >= FUTEX_OVERDUE_S)):
            return ""  # a blocking wait (a child's exit, a pipe, a long join) may last
        self.told = True
        return (f"{WEDGED} level 1's main thread has not run for {now - self.since:.0f} s, asleep in {wchan}: "
                "the timer of a sleep of at most seconds did not fire; a level-1 CPU stopped taking interrupts")  # fmt: skip


def start(period: float, beat: float = 60.0) -> threading.Event:
    """A heartbeat line every `beat` seconds and a full report every `period`,
    until the returned event is set. The host kills a level 1 whose console
    stays silent much longer than a beat (lab.vm.SILENCE_KILL_S)."""
    stop = threading.Event()
    main = MainThreadWatch(Path(f"/proc/self/task/{threading.main_thread().native_id}"), MAIN_STALL_S)

    def loop() -> None:
        waited = 0.0
        told: set[int] = set()  # pids already reported wedged
        main.check(time.monotonic())
        while not stop.wait(beat):
            waited += beat
            if stalled := main.check(time.monotonic()):
                print(stalled, flush=True)
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
