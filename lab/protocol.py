"""Every string and constant that the host side and level 1 (lab/invm/)
both use: console markers, kernel-log marks, file names and the defaults
both sides must agree on. Stdlib only (nothing at all): level 1 imports it.

Level 2 speaks to level 1 through lab/invm/guest_init.sh; the markers that
only those two share stay beside the code that reads them.
"""

from __future__ import annotations

# Level 1's console (lab.vm reads them; lab/invm prints them).
LEVEL1_READY = "LAB-LEVEL1-READY"  # level 1 booted and its script started
LEVEL1_DONE = "LAB-LEVEL1-DONE"  # its results are written
PROBE_OK = "LAB-PROBE-OK"  # the accelerator probe's command ran
WEDGED = "LAB-WEDGED"  # level 1's watchdog: this kernel can no longer be trusted to finish

# Level 1's kernel log (lab.invm.marks writes them; lab.attempts orders evidence by them).
FAILED = "LAB-FAILED"  # "LAB-FAILED level/check"
LEVEL2_BEGIN = "LAB-LEVEL2-BEGIN"  # "LAB-LEVEL2-BEGIN <console file>"

# A level-2 guest's console (guest_init.sh prints them).
GUEST_READY = "LAB-GUEST-READY"
GUEST_DONE = "LAB-GUEST-DONE"
GUEST_PHASE = "LAB-PHASE "  # "LAB-PHASE <name>": the pvsched tests' phases
GUEST_DMESG_BEGIN, GUEST_DMESG_END = "LAB-GUEST-DMESG-BEGIN", "LAB-GUEST-DMESG-END"


def guest_kernel_log_spans(lines: list[str]) -> list[tuple[int, int]]:
    """[start, end) line ranges of a level-2 console that hold its kernel
    log: each dmesg dump between the markers (a kexec'd guest prints one per
    kernel), and what a kernel printed after the last dump when it never
    dumped its own (it died); the whole console when nothing was dumped.
    The live console shows the same messages as a dump, filtered."""
    spans, begin = [], None
    for i, line in enumerate(lines):
        if GUEST_DMESG_BEGIN in line:
            begin = i + 1
        elif GUEST_DMESG_END in line and begin is not None:
            spans.append((begin, i))
            begin = None
    if not spans:
        return [(0, len(lines))]
    tail = spans[-1][1] + 1
    if not any(GUEST_DONE in line for line in lines[tail:]) and any(line.strip() for line in lines[tail:]):
        spans.append((tail, len(lines)))
    return spans


# KVM's shipped cap (kvm.pvsched_budget_us, pvsched_period_us,
# pvsched_vm_budget_us in kernel/patches/0003): what the functional phases,
# the stress suite's hostile part and the bench's pvsched mode run under,
# and what level 1 checks the kernel booted with.
SHIPPED_CAP_US = {"budget": 50_000, "period": 1_000_000, "vm_budget": 50_000, "slice": 1_000}

# The stress suite: the report rewritten after every part, and the parts
# that snapshot the per-vCPU counters.
STRESS_PARTIAL_REPORT = "stress-partial.json"
STRESS_COUNTER_PARTS = frozenset({"reload", "kill", "hostile"})
# The hostile part's rounds: at least five, so its ratios keep an interval
# (lab.bench_stats.MIN_ROUNDS); seven, because one round's host latency
# varies 9-14 % here (vanilla rounds of three runs) and the criterion is 10 %.
STRESS_HOSTILE_ROUNDS = 7

# The benchmark's modes (the first round's order; later rounds rotate it).
BENCH_MODES = ("idle", "vanilla", "pvsched", "pvsched-nocap", "scx", "static")
# The bench's scenarios (lab.invm.bench) and the guest size each measures by default.
BENCH_SCENARIOS = ("single", "smp", "tenants")
BENCH_GUEST_CPUS = {"single": 1, "smp": 2, "tenants": 1}
# A bench window still open this long past its length is livelocked: level 1
# withdraws the mode and reports the livelock as the mode's result.
BENCH_OVERDUE_GRACE_S = 30


def stress_trouble(part: str, n: int) -> str:
    """The check name of a stress part's n-th failure or lost round (1-based),
    marked in level 1's kernel log as `LAB-FAILED stress/<this>`: fixed width,
    so no mark is a prefix of another."""
    return f"{part}#{n:03d}"


def parse_cap(text: str) -> tuple[int, int, int | None]:
    """BUDGET_US/PERIOD_US[/VM_BUDGET_US] -> (budget, period, VM budget or None); ValueError if not that shape."""
    budget, period, *vm = (int(v) for v in text.split("/"))
    if len(vm) > 1:
        raise ValueError(f"{text!r} has more than three fields")
    return budget, period, vm[0] if vm else None
