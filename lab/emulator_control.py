"""`nox -s emulator_control`: how often each emulator sign occurs without our code.

The same nested workload (level 1 under this machine's accelerator, level-2
guests with an RT task, hotplug and every vCPU busy: lab.invm.control) runs
in eight cells, interleaved round by round so drift hits every cell alike:

  base      the unpatched kernel: no series, no guest driver, no policy
  base-ipi  ... while two level-1 tasks wake each other across the CPUs the
            vCPUs run on (lab.invm.ipi_storm): the host interrupts our
            policies raise, raised with none of our code
  base-flip ... while a level-1 process flips the vCPU threads between
            SCHED_FIFO and SCHED_OTHER 20 times a second (lab.invm.rt_flip):
            what the boost policy does to level 1's scheduler, without it
  base-load ... under the stress suite's host load (stress-ng on every CPU,
            a 1 kHz cyclictest at FIFO 5: lab.invm.host_load), under which
            its vanilla rounds have shown `null-percpu`
  base-scx  ... with the kernel's own sched_ext example scheduler attached
            (tools/sched_ext/scx_simple, FIFO): sched_ext without our code
  nopolicy  the series and the guest driver, no policy attached
  boost     ... with the boost policy attached
  scx       ... with the sched_ext policy attached

Two cells add interrupt traffic inside the guests, that of the lab's
functional guest made with no driver (guest/tools/ipi_pingpong: IPIs
between the two vCPUs; NMIs to the other vCPU through sysrq `l`), run only
when named:

  base-girq     the unpatched kernel, guests sending IPIs and NMIs
  nopolicy-girq our kernels and the guest driver, the same guests

Two more cells, run only when named, replay the guests of the stress
suite's hostile part (where three guests triple-faulted in user mode with
no sign, 2026-12-04/05); the first runs the unpatched kernel:

  base-spin     base-load's host load, each guest's vCPUs all in the
                load's `sh` busy loop for SPIN_S seconds instead of 2
  nopolicy-spin the same on our kernels with the guest driver, no policy:
                the hostile part's vanilla rounds

Three more cells, run only when named (`--cells`), tell which level of ours
a fault seen on our kernels and not on the base comes with (none of them
loads the guest driver or a policy, so none may excuse anything):

  nodriver  our kernels in both levels, no guest driver
  l1-ours   our level-1 kernel, the unpatched guest kernel
  l2-ours   the unpatched level-1 kernel, our guest kernel

Each of the three has a `-spin` twin (`nodriver-spin`, ...) with base-spin's
load and guests: `idt-unreadable` came first only on our kernels with the
driver registered, and these say whether it needs the driver or which
level's kernel of ours (since 2026-12-06 it is seen on the unpatched
kernel too, in base-girq).

Each run counts the emulator signs (lab.emulator_faults), the splats (and
whether our code is in their trace), lost level-1 boots and failed level-2
boots. A sign that never occurs in the base cell cannot excuse anything
(emulator_faults.ATTRIBUTABLE, checked against the README's table).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import attempts as attempts_lib
from lab import emulator_faults, exit_returns, landmarks, ui
from lab.ktap import Case
from lab.paths import REPO
from lab.pipeline import Options, Pipeline, StepFailed
from lab.runner import Runner
from lab.splats import scan, scan_guest_console
from lab.vm import Level1

DEFAULT_CELLS = ("base", "base-ipi", "base-flip", "base-load", "base-scx", "nopolicy", "boost", "scx")
# Each level's kernel (and guest initramfs) from the unpatched build or ours: (level 1, level 2).
KERNELS = {"nodriver": ("patched", "patched"), "l1-ours": ("patched", "base"), "l2-ours": ("base", "patched")}
KERNELS |= {f"{name}-spin": builds for name, builds in KERNELS.items()}
# Guests that add IPIs and NMIs to the control's workload.
GUEST_IRQ = ("base-girq", "nopolicy-girq")
# Guests whose vCPUs spin in the shell loop as long as the hostile part's
# (a minute there, less here so a boot stays within its timeout).
SPIN_S = {name: 45 for name in ("base-spin", "nopolicy-spin", *KERNELS) if name.endswith("-spin")}
# Cells that run under the stress suite's host load.
HOST_LOAD = ("base-load", *SPIN_S)
CELLS = tuple(dict.fromkeys(DEFAULT_CELLS + GUEST_IRQ + tuple(SPIN_S) + tuple(KERNELS)))
POLICY = {"base": "none", "base-ipi": "none", "base-flip": "none", "base-load": "none", "base-scx": "scx-simple",
          "nopolicy": "none", "boost": "boost", "scx": "scx", "base-girq": "none", "nopolicy-girq": "none",
          **{name: "none" for name in (*SPIN_S, *KERNELS)}}  # fmt: skip
# The cells that run the unpatched kernel: only signs seen there may excuse.
UNPATCHED = ("base", "base-ipi", "base-flip", "base-load", "base-scx", "base-girq", "base-spin")
# The guest tools the control's workload runs (lab/invm/guest_init.sh, mode control).
BASE_TOOLS = ("rtspin", "ipi_pingpong")
# Cells whose guests never load the guest driver.
NO_DRIVER = UNPATCHED + tuple(KERNELS)
# What the series adds to kconfig: the unpatched base has no such symbol.
SERIES_OPTIONS = ("CONFIG_KVM_PVSCHED", "CONFIG_PVSCHED_GUEST", "CONFIG_PVSCHED_GUEST_PREEMPT")


@dataclass
class Cell:
    """What one cell boots: level 1's kernel and the config for lab.invm.control."""

    name: str
    level1: Level1
    cfg: dict[str, Any]
    system_map: Path | None
    levels: dict[str, Any]
    kernel_key: str


def builds_of(cell: str) -> tuple[str, str]:
    """Which build ("base" or "patched") each level of a cell boots: (level 1, level 2)."""
    if cell in KERNELS:
        return KERNELS[cell]
    return ("base", "base") if cell in UNPATCHED else ("patched", "patched")


def combine(name: str, level1_from: Cell, level2_from: Cell) -> Cell:
    """A cell booting level 1 as `level1_from` does and level-2 guests of
    `level2_from`'s kernel and initramfs."""
    cfg = {**level1_from.cfg, "guest_kernel": level2_from.cfg["guest_kernel"],
           "guest_initramfs": level2_from.cfg["guest_initramfs"]}  # fmt: skip
    return Cell(name, level1_from.level1, cfg, level1_from.system_map, level1_from.levels, level1_from.kernel_key)


def rounds(cells: list[str], runs: int) -> Iterator[tuple[int, str]]:
    """(run number, cell): every cell once per round, the order rotated each round."""
    for r in range(runs):
        for i in range(len(cells)):
            yield r + 1, cells[(i + r) % len(cells)]


def classify(
    out: Path, mode: str, system_map: Path | None, lost: str, report: dict[str, Any] | None, runner: Runner | None = None
) -> dict[str, Any]:
    """What one run showed: emulator signs, splats (ours or not), lost and failed boots.
    `runner`: for the signs that read the guest kernel's text (lab.exit_returns)."""
    marks = landmarks.read(system_map.parent if system_map else None)
    exit_before = exit_returns.GuestText(runner, out).exit_before if runner is not None else None
    signs = emulator_faults.find(out, mode, emulator_faults.read_symbols(system_map), marks, exit_before)
    timeline = emulator_faults.timeline_name(out)
    text = (out / timeline).read_text(errors="replace") if (out / timeline).exists() else ""
    splats = scan(text, "level1", timeline)
    for console in emulator_faults.level2_consoles(out):
        splats += scan_guest_console(console.read_text(errors="replace"), str(console.relative_to(out)))
    splat_rows = []
    for s in splats:
        lines = (out / s.source).read_text(errors="replace").splitlines()
        splat_rows.append({"level": s.level, "kind": s.kind, "line": s.line, "source": s.source,
                           "ours": attempts_lib.our_frame(lines, s.line_no)})  # fmt: skip
    boots = (report or {}).get("boots", [])
    return {
        "lost": lost,
        "policy_error": (report or {}).get("policy_error", ""),
        "boots": len(boots),
        "boots_failed": [b["reason"] for b in boots if not b["ok"]],
        # A guest that booted but did not do the cell's workload (e.g. no IPI round trips) ran another cell.
        "workload_failed": sum(1 for b in boots if b["ok"] for c in b.get("workload", []) if c["status"] != "passed"),
        "ipi_storm_trips": (report or {}).get("ipi_storm_trips"),
        "rt_flips": (report or {}).get("rt_flips"),
        "host_load_ran": (report or {}).get("host_load_ran"),
        "signs": [{"signature": e.signature, "where": e.describe()} for e in signs],
        "splats": splat_rows,
    }


# A shutdown exit KVM saw at a RIP below the canonical hole: the guest was in user mode.
USER_SPACE_TOP = 0x0000_8000_0000_0000


def user_mode_triple_faults(reason: str) -> list[int]:
    """The user-space RIPs of the triple faults a failed boot's reason names (lab.invm.shutdown_trace)."""
    if "(triple fault)" not in reason:
        return []
    return [rip for m in emulator_faults.SHUTDOWN_AT.finditer(reason) if (rip := int(m[2], 16)) < USER_SPACE_TOP]


def events(run: dict[str, Any]) -> set[str]:
    """The table's row names this run counts in (each at most once per run)."""
    names = {f"sign: {s['signature']}" for s in run["signs"]}
    names |= {f"splat: {s['kind']}{' (our code in trace)' if s['ours'] else ''}" for s in run["splats"]}
    if run["lost"]:
        names.add("level 1 lost" + ("" if run["signs"] else " (no sign)"))
    if run["boots_failed"]:
        names.add("level-2 boot failed" + ("" if run["signs"] else " (no sign)"))
    if any(user_mode_triple_faults(reason) for reason in run["boots_failed"]):
        # The shape the stress suite's load guests died of (2026-12-04/05), counted apart.
        names.add("level-2 triple fault in user mode")
    if run.get("policy_error"):
        # Without its scheduler the run measured another cell: not a clean run of this one.
        names.add("policy not attached")
    if run.get("rt_flips") == 0:
        # The flipper could not change a vCPU thread's class: a run of `base`, not of `base-flip`.
        names.add("no vCPU thread flipped")
    if run.get("workload_failed"):
        names.add("guest workload not done")
    if run.get("host_load_ran") is False:
        # stress-ng or cyclictest ended early: not the stress suite's load throughout.
        names.add("host load not kept up")
    return names


def table(runs: list[dict[str, Any]], cells: list[str]) -> str:
    """Markdown: per event, in how many runs of each cell it occurred."""
    per_cell = {c: [r for r in runs if r["cell"] == c] for c in cells}
    rows = sorted({e for r in runs for e in events(r)})
    head = "| event | " + " | ".join(f"{c} ({len(per_cell[c])} runs)" for c in cells) + " |"
    lines = [head, "|---|" + "---|" * len(cells)]
    for name in rows or ["(nothing: no sign, splat or loss in any run)"]:
        counts = [sum(1 for r in per_cell[c] if name in events(r)) for c in cells]
        lines.append(f"| {name} | " + " | ".join(str(n) for n in counts) + " |")
    minutes = [sum(r["seconds"] for r in per_cell[c]) / 60 for c in cells]
    lines.append("| minutes of level 1 | " + " | ".join(f"{m:.1f}" for m in minutes) + " |")
    return "\n".join(lines) + "\n"


def rescan(run_dir: Path, kernels_dir: Path, runner: Runner | None = None) -> str:
    """Count a finished control run again with today's signs (lab.emulator_faults),
    from the consoles and dumps it kept: no VM. Rewrites control.json and
    control.md (the counts of the run as recorded stay in control-as-run.json)."""
    data = json.loads((run_dir / "control.json").read_text())
    original = run_dir / "control-as-run.json"
    if not original.exists():
        original.write_text(json.dumps(data, indent=2) + "\n")
    rows = []
    for row in data["runs"]:
        key = data["kernels"].get(row["cell"]) or data["kernels"].get("patched" if row["cell"] not in UNPATCHED else "base")
        system_map = kernels_dir / key / "System.map" if key else None
        report = None
        if (run_dir / row["dir"] / "control.json").exists():
            report = json.loads((run_dir / row["dir"] / "control.json").read_text())
        rows.append({**row, **classify(run_dir / row["dir"], "tcg", system_map, row["lost"], report, runner)})
    data["runs"] = rows
    data["rescanned"] = True
    (run_dir / "control.json").write_text(json.dumps(data, indent=2) + "\n")
    md = f"## Emulator control (level 1 TCG threads: {data['tcg_threads']}; counted again with today's signs)\n\n"
    md += table(rows, list(data["cells"]))
    (run_dir / "control.md").write_text(md)
    return md


class ControlRun:
    def __init__(self, opts: Options, cells: list[str], runs: int, boots: int) -> None:
        self.pipe = Pipeline(opts)
        self.cells, self.runs, self.boots = cells, runs, boots
        self.results: list[dict[str, Any]] = []

    def _cell(self, name: str, series: bool) -> Cell:
        pipe = self.pipe
        pipe.opts.series = series
        pipe.opts.drop_options = () if series else SERIES_OPTIONS
        tree = pipe.source()
        builds = pipe.kernels(tree)
        binaries = {}
        if not series:
            # The guest tools are built with the guest driver; the base has none, so the same tools are built here.
            for tool in BASE_TOOLS:
                built = pipe.run_dir / tool
                with pipe.step(f"build {tool}"):
                    pipe.runner.run(
                        ["gcc", "-O2", "-static", "-Wall", "-o", str(built), str(REPO / f"guest/tools/{tool}.c")], f"build {tool}"
                    )
                binaries[f"bin/{tool}"] = built
        level1, cfg, _ = pipe.prepare_vms(tree, builds, binaries)
        return Cell(name, level1, cfg, pipe.system_map, dict(pipe.record.levels["1"]), builds["host"].key)

    def _one(self, cell: Cell, number: int) -> dict[str, Any]:
        pipe = self.pipe
        out = pipe.run_dir / f"{cell.name}-{number}"
        out.mkdir()
        control = {"policy": POLICY[cell.name], "boots": self.boots, "ipi_storm": cell.name == "base-ipi",
                   "rt_flip": cell.name == "base-flip", "host_load": cell.name in HOST_LOAD,
                   "guest_irq": cell.name in GUEST_IRQ, "guest_spin_s": SPIN_S.get(cell.name, 2)}  # fmt: skip
        cfg = {**cell.cfg, "out": str(out), "control": control}
        if cell.name in NO_DRIVER:
            cfg.pop("pvsched", None)
        pipe.record.levels["1"] = dict(cell.levels)
        start = time.monotonic()
        lost, report = "", None
        try:
            report = pipe.boot_level1(cell.level1, "lab.invm.control", cfg, out, "control.json")
        except StepFailed:
            assert pipe.record.failed_step is not None
            lost = pipe.record.failed_step["message"].splitlines()[0]
            pipe.record.failed_step = None  # a lost boot is what this counts, not a failed step
        pipe.keep_cpu_dump(out)
        row = {"cell": cell.name, "run": number, "seconds": round(time.monotonic() - start, 1), "dir": out.name,
               **classify(out, str(cell.levels["accel"]), cell.system_map, lost, report, pipe.runner)}  # fmt: skip
        shown = sorted(events(row)) or ["clean"]
        ui.info(f"control {cell.name} run {number}: {', '.join(shown)} ({row['seconds']:.0f} s)")
        return row

    def body(self) -> None:
        pipe = self.pipe
        pipe.doctor()
        built: dict[str, Cell] = {}
        for name in sorted({build for c in self.cells for build in builds_of(c)}):  # "base" first, as ever
            built[name] = self._cell(name, series=name == "patched")
        setups = {c: combine(c, built[builds_of(c)[0]], built[builds_of(c)[1]]) for c in self.cells}
        for number, name in rounds(self.cells, self.runs):
            self.results.append(self._one(setups[name], number))
            self._write(setups)
        for name in self.cells:
            mine = [r for r in self.results if r["cell"] == name]
            ours = [s["line"] for r in mine for s in r["splats"] if s["ours"]]
            why = f"{len(mine)} runs; splats with our code: {ours[:2]}" if ours else f"{len(mine)} runs"
            # A measurement, except that a splat with our code in its trace is ours whatever the cell.
            pipe.record.cases.append(Case(f"control_{name}_no_splat_of_ours", "level1", "failed" if ours else "passed", why))

    def _write(self, setups: dict[str, Cell]) -> None:
        data = {
            "cells": self.cells,
            "runs_per_cell": self.runs,
            "boots_per_run": self.boots,
            "tcg_threads": self.pipe.opts.level1.tcg_threads,
            "tcg_tb_size_mib": self.pipe.opts.level1.tcg_tb_size_mib,
            "kernels": {name: cell.kernel_key for name, cell in setups.items()},
            "runs": self.results,
        }
        (self.pipe.run_dir / "control.json").write_text(json.dumps(data, indent=2) + "\n")
        level1 = self.pipe.opts.level1
        tb = "" if level1.tcg_tb_size_mib is None else f", translation buffer {level1.tcg_tb_size_mib} MiB"
        md = f"## Emulator control (level 1 TCG threads: {level1.tcg_threads}{tb})\n\n" + table(self.results, self.cells)
        (self.pipe.run_dir / "control.md").write_text(md)
        self.pipe.record.extra_markdown = md

    def run(self) -> int:
        return self.pipe.guarded(self.body)
