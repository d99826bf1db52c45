"""Test cases, and the KTAP lines the in-VM tests print. Stdlib only: level 1 imports it."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

_RESULT = re.compile(r"^\s*(not ok|ok)\s+(\d+)\s+(.*?)(?:\s+#\s*(.*))?$")


@dataclass
class Case:
    name: str
    level: str  # "host", "level1", "level2"
    status: str  # "passed", "failed", "skipped"
    message: str = ""
    seconds: float = 0.0
    attempt: int = 0  # 0: the attempt whose verdict stands; N: attempt N, lost to the emulator and rerun

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Case:
        return cls(
            name=str(data["name"]),
            level=str(data["level"]),
            status=str(data["status"]),
            message=str(data.get("message", "")),
            seconds=float(data.get("seconds", 0.0)),  # type: ignore[arg-type]
            attempt=int(data.get("attempt", 0)),  # type: ignore[call-overload]
        )


def parse_ktap(text: str, level: str) -> list[Case]:
    """Results from KTAP output; '# ...' lines before a 'not ok' become its message."""
    cases: list[Case] = []
    notes: list[str] = []
    for line in text.splitlines():
        m = _RESULT.match(line)
        if m:
            verdict, _, name, directive = m.groups()
            directive = directive or ""
            if directive.upper().startswith("SKIP"):
                status, message = "skipped", directive[4:].strip()
            elif verdict == "ok":
                status, message = "passed", directive
            else:
                status, message = "failed", "; ".join(notes) or directive
            cases.append(Case(name.strip(), level, status, message))
            notes = []
        elif line.startswith("# "):
            notes.append(line[2:].strip())
    return cases


def planned_count(text: str) -> int | None:
    m = re.search(r"^1\.\.(\d+)\s*$", text, re.M)
    return int(m.group(1)) if m else None
