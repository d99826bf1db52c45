"""A level-2 guest's exits as level 1 sampled them (lab.invm.exit_sample),
kept as data in the run's output so the host can read them (the emulator's
`guest-at-vmrun-return` sign, lab.emulator_faults). Stdlib only: shared by
the host and level 1."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lab.symbols import SymbolMap


@dataclass(frozen=True)
class VcpuExits:
    vcpu: int
    count: int
    top: list[tuple[str, int, int]]  # (reason, rip, exits), most frequent first

    def describe(self, seconds: float, symbols: SymbolMap | None) -> str:
        if not self.count:
            return f"vCPU {self.vcpu} no exits (halted or not run)"
        reason, rip, n = self.top[0]
        where = f" ({symbols.name(rip)})" if symbols else ""
        return (f"vCPU {self.vcpu} {self.count / seconds:.0f} exits/s, "
                f"{100 * n // self.count} % {reason} at {rip:#x}{where}")  # fmt: skip


def record_name(guest: str) -> str:
    """The file, in the run's output directory, of a guest's exit sample."""
    return f"level2-exits-{guest}.json"


def label_of(record: Path) -> str:
    """The guest whose exit sample `record` is (record_name's inverse)."""
    return record.name.removeprefix("level2-exits-").removesuffix(".json")


def registers_path(record: Path) -> Path:
    """Where the registers of the guest whose exit sample is `record` are kept (lab.invm.qmp)."""
    return record.with_name(f"level2-registers-{label_of(record)}.txt")


def write_record(path: Path, found: dict[int, VcpuExits], seconds: float) -> None:
    """The sample as data, for the host: lab.emulator_faults reads the RIPs."""
    vcpus = [{"vcpu": e.vcpu, "count": e.count, "top": [[r, f"{rip:#x}", n] for r, rip, n in e.top]} for _, e in sorted(found.items())]
    path.write_text(json.dumps({"seconds": round(seconds, 3), "vcpus": vcpus}, indent=1) + "\n")


def read_record(path: Path) -> tuple[list[VcpuExits], float]:
    data = json.loads(path.read_text())
    vcpus = [VcpuExits(int(v["vcpu"]), int(v["count"]), [(r, int(rip, 16), int(n)) for r, rip, n in v["top"]]) for v in data["vcpus"]]
    return vcpus, float(data["seconds"])
