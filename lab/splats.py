"""Finding kernel splats (BUG, WARNING, Oops, lockups, stalls, KASAN...) in logs.

Stdlib only: level 1 imports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lab.protocol import guest_kernel_log_spans

PATTERNS: tuple[tuple[str, str], ...] = (
    # Before "bug", which their reports also match: a lockup is a stall
    # (lab.attempts.STALL_KINDS), what a CPU that stopped answering causes.
    ("soft-lockup", r"watchdog: BUG: soft lockup|soft lockup - CPU#"),
    ("hard-lockup", r"hard LOCKUP|NMI watchdog: Watchdog detected hard LOCKUP"),
    ("bug", r"\bBUG: |kernel BUG at "),
    ("warning", r"WARNING: CPU: \d+ PID: \d+|------------\[ cut here \]------------"),
    ("oops", r"\bOops: |general protection fault"),
    ("panic", r"Kernel panic - not syncing"),
    ("rcu-stall", r"rcu: INFO: rcu_\w+ (self-)?detected stall|rcu_\w+ detected stalls"),
    ("hung-task", r"INFO: task .* blocked for more than \d+ seconds"),
    ("kasan", r"\bKASAN: "),
    ("ubsan", r"\bUBSAN: "),
    ("lockdep", r"possible circular locking dependency|inconsistent lock state|possible recursive locking"),
    ("kfence", r"\bKFENCE: "),
)
_COMPILED = tuple((kind, re.compile(rx)) for kind, rx in PATTERNS)


@dataclass(frozen=True)
class Splat:
    level: str
    kind: str
    line_no: int
    line: str
    source: str  # the log it came from
    # Set when the attempt it came from was lost to the emulated CPU
    # (lab.emulator_faults) and rerun: reported, but it does not fail the run.
    attributed: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "level": self.level,
            "kind": self.kind,
            "line_no": self.line_no,
            "line": self.line,
            "source": self.source,
            **({"attributed": self.attributed} if self.attributed else {}),
        }


def scan(text: str, level: str, source: str) -> list[Splat]:
    found = []
    for no, line in enumerate(text.splitlines(), 1):
        for kind, rx in _COMPILED:
            if rx.search(line):
                found.append(Splat(level, kind, no, line.strip()[:300], source))
                break
    return found


def scan_guest_console(console: str, source: str) -> list[Splat]:
    """Splats of a level-2 console's kernel logs (lab.protocol.guest_kernel_log_spans);
    line numbers are the console's."""
    lines = console.splitlines()
    found = []
    for start, end in guest_kernel_log_spans(lines):
        section = "\n".join(lines[start:end])
        found += [Splat(s.level, s.kind, s.line_no + start, s.line, s.source) for s in scan(section, "level2", source)]
    return found
