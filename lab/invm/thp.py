"""Level 1's transparent huge pages, for the emulator control.

QEMU asks for huge pages for a guest's RAM; khugepaged in level 1 later
collapses the guest's small pages into huge ones, and every collapse makes
KVM drop the nested page-table entries of that range, so the guest takes
nested page faults long after its boot, wherever it runs (its interrupt
stacks included). Whether the emulator's faults come with those is what
the control's base-spin-nothp cell asks. Stdlib only, like lab.invm.
"""

from __future__ import annotations

from pathlib import Path

THP = Path("/sys/kernel/mm/transparent_hugepage")
VMSTAT = Path("/proc/vmstat")
# The counters that say whether huge pages were made or split under the guests.
COUNTERS = ("thp_fault_alloc", "thp_collapse_alloc", "thp_split_page", "thp_split_pmd")


def turn_off(thp: Path = THP) -> str:
    """No huge pages from now on, at fault or by khugepaged; the setting as it reads after."""
    for name in ("enabled", "defrag"):
        (thp / name).write_text("never\n")
    return (thp / "enabled").read_text().strip()


def setting(thp: Path = THP) -> str:
    return (thp / "enabled").read_text().strip() if (thp / "enabled").exists() else "unavailable"


def counters(vmstat: Path = VMSTAT) -> dict[str, int]:
    found = dict(line.split() for line in vmstat.read_text().splitlines() if line.split()[0] in COUNTERS)
    return {name: int(found.get(name, -1)) for name in COUNTERS}
