"""Samples the vCPU threads' scheduling policy from its own process.

Started by the pvsched observer inside level 1, before the guest boots, as
`python -m lab.invm.vcpu_sampler OUT STATS INTERVAL`; it waits for one line
of thread ids on stdin (the observer sends them once QMP has named them),
raises itself to SCHED_FIFO above the boosts and appends one JSON line per
sample to OUT: `{"t": monotonic before the reads, "policies": {tid: SCHED_*},
"priorities": {tid: RT priority}}`, plus the policy's per-vCPU statistics
and the time after reading them (`t_vcpus`) every fifth sample, until SIGTERM.

A process of its own, started early: as a thread of the observer it shared
the observer's GIL and stalled for whole phases, and started on demand its
interpreter came up (over 9p, under TCG) only after the guest's RT phase.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

# Boosted vCPU threads run at SCHED_FIFO 10 (the policy's default); the
# sampler must run above them or it cannot watch them on a loaded host.
SAMPLER_PRIORITY = 20
STATS_EVERY = 5  # the statistics file changes every 100 ms; parsing it costs


def stat_fields(tid: int) -> list[str]:
    """/proc/<tid>/stat from field 3 (state) on: index i is field i + 3. OSError if gone."""
    return Path(f"/proc/{tid}/stat").read_text().rsplit(")", 1)[1].split()


def thread_sched(tid: int) -> tuple[int, int] | None:
    """(SCHED_*, RT priority) of a thread from /proc/<tid>/stat (fields 41, 40), None if gone."""
    try:
        fields = stat_fields(tid)
    except OSError:
        return None
    return int(fields[38]), int(fields[37])


def thread_priority(tid: int) -> int:
    """A thread's effective priority as /proc shows it (field 18: -1 - its RT
    priority for an RT one, PI boost included; 0..39 otherwise). OSError if gone."""
    return int(stat_fields(tid)[15])


def thread_policy(tid: int) -> int | None:
    """SCHED_* of a thread, None if gone."""
    found = thread_sched(tid)
    return found[0] if found else None


def read_stats(stats: Path) -> list[dict[str, int]] | None:
    try:
        data: dict[str, list[dict[str, int]]] = json.loads(stats.read_text())
    except (OSError, ValueError):
        return None
    return data.get("vcpus")


def sample_forever(out: Path, stats: Path, interval: float, tids: list[int]) -> None:
    stop = False

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    n = 0
    with out.open("a") as f:
        while not stop:
            # Stamped before the reads: a sample stamped after an event was
            # read after it (stamped after, a read from before an admin's
            # chrt was judged as after it: test run 16d6).
            started = time.monotonic()
            sched = {t: thread_sched(t) for t in tids}
            record: dict[str, object] = {
                "t": started,
                "policies": {t: s[0] if s else None for t, s in sched.items()},
                "priorities": {t: s[1] if s else None for t, s in sched.items()},
            }
            if n % STATS_EVERY == 0:
                record["vcpus"] = read_stats(stats)
                record["t_vcpus"] = time.monotonic()  # no earlier than what the statistics saw
            f.write(json.dumps(record) + "\n")
            f.flush()  # a killed sampler still leaves what it saw
            n += 1
            time.sleep(interval)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m lab.invm.vcpu_sampler OUT STATS INTERVAL  (thread ids on stdin)", file=sys.stderr)
        return 2
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(SAMPLER_PRIORITY))
    line = sys.stdin.readline()  # blocks until the observer knows the vCPU threads
    if not line.strip():
        return 0  # the guest never got that far: nothing to sample
    sample_forever(Path(argv[0]), Path(argv[1]), float(argv[2]), [int(t) for t in line.split()])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
