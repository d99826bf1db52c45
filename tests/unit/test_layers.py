"""Which code may import which: the host side never imports level 1's code,
and level 1 (lab/invm/) needs only the standard library and the few lab
modules that are themselves stdlib-only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from lab.paths import REPO

LAB = REPO / "lab"
# Shared by the host and level 1; each may import only the stdlib and these.
LEVEL1_SHARED = {"lab.protocol", "lab.runner", "lab.runtime", "lab.ktap", "lab.errors", "lab.accel", "lab.symbols",
                 "lab.bench_stats", "lab.exit_record"}  # fmt: skip


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from lab import x` imports the module lab.x
            if node.module == "lab":
                found |= {f"lab.{alias.name}" for alias in node.names}
    return found


def non_stdlib(names: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] not in sys.stdlib_module_names and n != "__future__"}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def test_the_host_side_never_imports_level_one_code() -> None:
    offenders = {module_name(p): sorted(n for n in imports(p) if n.startswith("lab.invm")) for p in sorted(LAB.glob("*.py"))}
    assert {m: bad for m, bad in offenders.items() if bad} == {}


def test_level_one_needs_only_the_stdlib_and_the_shared_modules() -> None:
    offenders = {}
    for p in sorted((LAB / "invm").glob("*.py")):
        bad = {n for n in non_stdlib(imports(p)) if not n.startswith("lab.invm") and n not in LEVEL1_SHARED and n != "lab"}
        if bad:
            offenders[module_name(p)] = sorted(bad)
    for name in sorted(LEVEL1_SHARED):
        bad = non_stdlib(imports(LAB / f"{name.removeprefix('lab.')}.py")) - LEVEL1_SHARED
        if bad:
            offenders[name] = sorted(bad)
    assert offenders == {}


def test_the_protocol_imports_nothing() -> None:
    assert non_stdlib(imports(LAB / "protocol.py")) == set()


def test_every_level1_entry_point_runs_as_a_script() -> None:
    """Level 1 runs `python -m lab.invm.<module>`: a module without its
    __main__ block exits 0 having done nothing (seen: a bench that ran no round)."""
    import re

    entries = set(re.findall(r'"(lab\.invm\.\w+)"', "".join(p.read_text() for p in LAB.glob("*.py"))))
    assert entries, "no level-1 entry point named by the host"
    missing = [e for e in sorted(entries) if 'if __name__ == "__main__":' not in (REPO / (e.replace(".", "/") + ".py")).read_text()]
    assert missing == []
