"""Kernel addresses to `function+0xoff` from a System.map. Stdlib only:
used by the host (level 1's register dumps) and by level 1 (a level-2
guest's triple fault)."""

from __future__ import annotations

import bisect
from pathlib import Path


class SymbolMap:
    """Address -> symbol+offset from a System.map."""

    def __init__(self, system_map: Path) -> None:
        pairs = []
        for line in system_map.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tTwW":
                pairs.append((int(parts[0], 16), parts[2]))
        pairs.sort()
        self.addrs = [a for a, _ in pairs]
        self.names = [n for _, n in pairs]

    def name(self, addr: int) -> str:
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0:
            return "?"
        return f"{self.names[i]}+{addr - self.addrs[i]:#x}"
