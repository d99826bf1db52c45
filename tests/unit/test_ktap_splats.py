from __future__ import annotations

import pytest

from lab.ktap import parse_ktap, planned_count
from lab.splats import scan

KTAP = """\
[    1.0] random kernel line
KTAP version 1
1..3
ok 1 guest_under_kvm
# expected 2 CPUs, /proc/cpuinfo has 1
not ok 2 guest_cpus
ok 3 guest_memory # SKIP no memory info
"""


def test_ktap_results_and_messages() -> None:
    cases = parse_ktap(KTAP, "level2")
    assert [(c.name, c.status) for c in cases] == [
        ("guest_under_kvm", "passed"),
        ("guest_cpus", "failed"),
        ("guest_memory", "skipped"),
    ]
    assert cases[1].message == "expected 2 CPUs, /proc/cpuinfo has 1"
    assert cases[2].message == "no memory info"
    assert planned_count(KTAP) == 3
    assert planned_count("no plan") is None


CLEAN = """\
[    0.000000] Linux version 6.12.117-pvsched-lab
[    0.120000] Hypervisor detected: KVM
[    1.000000] clocksource: Switched to clocksource kvm-clock
[    2.000000] Run /init as init process
"""


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("[ 5.1] WARNING: CPU: 1 PID: 77 at kernel/sched/core.c:123 foo+0x1/0x2", "warning"),
        ("[ 5.1] BUG: kernel NULL pointer dereference, address: 0000000000000000", "bug"),
        ("[ 5.1] kernel BUG at mm/slub.c:42!", "bug"),
        ("[ 5.1] Oops: 0002 [#1] PREEMPT SMP", "oops"),
        ("[ 5.1] watchdog: BUG: soft lockup - CPU#0 stuck for 22s!", "soft-lockup"),
        ("[ 5.1] rcu: INFO: rcu_preempt self-detected stall on CPU", "rcu-stall"),
        ("[ 5.1] INFO: task kworker/0:1:12 blocked for more than 120 seconds.", "hung-task"),
        ("[ 5.1] BUG: KASAN: slab-use-after-free in pvsched_read", "bug"),
        ("[ 5.1] UBSAN: array-index-out-of-bounds in x.c:1:2", "ubsan"),
        ("[ 5.1] WARNING: possible circular locking dependency detected", "lockdep"),
        ("[ 5.1] Kernel panic - not syncing: Attempted to kill init!", "panic"),
    ],
)
def test_each_splat_kind_is_found(line: str, kind: str) -> None:
    found = scan(CLEAN + line + "\n", "level1", "dmesg")
    assert len(found) == 1
    assert found[0].kind == kind and found[0].line_no == 5


def test_clean_log_has_no_splats() -> None:
    assert scan(CLEAN, "level2", "dmesg") == []


def test_every_kernel_log_of_a_kexec_console_is_scanned_once() -> None:
    from lab.splats import scan_guest_console

    dump1 = "LAB-GUEST-DMESG-BEGIN\n[ 1.0] WARNING: CPU: 0 PID: 1 at x.c:1 first+0x1/0x2\nLAB-GUEST-DMESG-END\n"
    live2 = "[ 0.5] BUG: unable to handle page fault for address: 0000000000000008\n"  # printed live, then dumped
    dump2 = "LAB-GUEST-DMESG-BEGIN\n[ 0.5] BUG: unable to handle page fault for address: 0000000000000008\nLAB-GUEST-DMESG-END\n"
    console = "LAB-KEXEC-BOOT 1\n" + dump1 + live2 + dump2 + "LAB-GUEST-DONE\n"
    found = scan_guest_console(console, "c")
    assert [(s.kind, s.line_no) for s in found] == [("warning", 3), ("bug", 7)]
    # The second kernel died before its dump: what it printed is its log.
    found = scan_guest_console("LAB-KEXEC-BOOT 1\n" + dump1 + live2, "c")
    assert [(s.kind, s.line_no) for s in found] == [("warning", 3), ("bug", 5)]
    # One kernel, one dump: the live lines before it are not counted twice.
    found = scan_guest_console(live2 + dump2 + "LAB-GUEST-DONE\n", "c")
    assert [(s.kind, s.line_no) for s in found] == [("bug", 3)]
