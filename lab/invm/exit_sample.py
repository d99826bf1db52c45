"""What a level-2 guest that stopped making progress is doing, from level 1.

Before a level-2 boot's timeout kills its QEMU, level 1 records every
`kvm_exit` of that guest for a couple of seconds: a vCPU that loops on
one exit (the same reason at the same guest RIP thousands of times a
second) is told from one with no exits at all (halted, waiting for an
interrupt that never comes, or runnable and never run: a same-priority
FIFO sibling spinning on its CPU), and the guest's System.map names the
function. Seen here: a cs-timer phase whose vCPU 1 took 930,000 exits in
100 s with its guest's timers dead. Stdlib only (level 1).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

from lab.exit_record import VcpuExits
from lab.invm import shutdown_trace
from lab.symbols import SymbolMap

SAMPLE_S = 2.0
# "qemu-system-x86-412 [001] d..1.  95.250331: kvm_exit: vcpu 1 reason npf rip 0xffffffff81042c10 info1 ..."
_EXIT = re.compile(r"-(\d+)\s+\[\d+\].*?kvm_exit: vcpu (\d+) reason (\S+) rip (0x[0-9a-f]+)")


def parse(trace: str, pids: set[int]) -> dict[int, VcpuExits]:
    """Exits per vCPU of the threads in `pids` (one guest's QEMU), by (reason, RIP)."""
    per_vcpu: dict[int, Counter[tuple[str, int]]] = {}
    for m in _EXIT.finditer(trace):
        if int(m[1]) not in pids:
            continue
        per_vcpu.setdefault(int(m[2]), Counter())[(m[3], int(m[4], 16))] += 1
    return {
        vcpu: VcpuExits(vcpu, sum(c.values()), [(r, rip, n) for (r, rip), n in c.most_common(3)]) for vcpu, c in sorted(per_vcpu.items())
    }


def qemu_threads(pid: int) -> set[int]:
    """Every thread of a process (its vCPU threads among them)."""
    try:
        return {int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()}
    except OSError:
        return set()


def sample(base: Path, pid: int, vcpus: int, seconds: float | None = None) -> tuple[dict[int, VcpuExits], float]:
    """Every kvm_exit of QEMU `pid`'s threads for `seconds` (SAMPLE_S); the shutdown filter is left in place after."""
    seconds = SAMPLE_S if seconds is None else seconds
    event = base / shutdown_trace.EVENT
    (event / "filter").write_text("0\n")  # every exit
    (event / "enable").write_text("1\n")
    (base / "trace").write_text("")
    start = time.monotonic()
    time.sleep(seconds)
    trace = (base / "trace").read_text(errors="replace")
    took = time.monotonic() - start
    shutdown_trace.arm(base)
    found = parse(trace, qemu_threads(pid) | {pid})
    return {v: found.get(v, VcpuExits(v, 0, [])) for v in range(vcpus)} | found, took


def verdict(found: dict[int, VcpuExits], seconds: float, symbols: SymbolMap | None) -> str:
    return f"KVM in the last {seconds:.1f} s: " + "; ".join(found[v].describe(seconds, symbols) for v in sorted(found))
