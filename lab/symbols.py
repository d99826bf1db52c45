"""Kernel addresses to `function+0xoff` from a System.map. Stdlib only:
used by the host (level 1's register dumps) and by level 1 (a level-2
guest's triple fault)."""

from __future__ import annotations

import bisect
from collections import Counter
from pathlib import Path

# Functions the lab's series adds (KVM's pvsched, sched_setattr_nopi), as a
# regular expression for a symbol name; lab.attempts and lab.monitor look for them.
SERIES_FUNCTION = r"\w*(?:pvsched|sched_setattr_nopi)\w*"


class SymbolMap:
    """Address -> symbol+offset from a System.map."""

    def __init__(self, system_map: Path) -> None:
        pairs = []
        for line in system_map.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tTwW":
                pairs.append((int(parts[0], 16), parts[2], parts[1] in "TW"))
        pairs.sort()
        self.addrs = [a for a, _, _ in pairs]
        self.names = [n for _, n, _ in pairs]
        self.is_global = [g for _, _, g in pairs]
        self.copies = Counter(self.names)
        # The kernel's own text (System.map's _stext to _etext); empty without them.
        ends = {n: a for a, n, _ in pairs if n in ("_stext", "_etext")}
        self.text = range(ends.get("_stext", 0), ends.get("_etext", 0))

    def start(self, addr: int) -> int | None:
        """The address of the text symbol that holds `addr`."""
        i = bisect.bisect_right(self.addrs, addr) - 1
        return self.addrs[i] if i >= 0 else None

    def function(self, addr: int) -> str:
        """The name of the text symbol that holds `addr` ("?" below the first)."""
        i = bisect.bisect_right(self.addrs, addr) - 1
        return self.names[i] if i >= 0 else "?"

    def name(self, addr: int) -> str:
        """`function+0xoff`; a static function the compiler emitted in many
        units (an out-of-line `wrmsrl`) also names the global function
        before it, which tells the unit: `wrmsrl` alone misled once."""
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0:
            return "?"
        said = f"{self.names[i]}+{addr - self.addrs[i]:#x}"
        if self.copies[self.names[i]] > 1:
            before = next((self.names[j] for j in range(i - 1, -1, -1) if self.is_global[j]), "?")
            said += f" [one of {self.copies[self.names[i]]} copies; the one after {before}]"
        return said
