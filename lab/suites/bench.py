"""The benchmark (`nox -s bench`): level 1 measures the rounds
(lab.invm.bench); the report is lab.bench_report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.bench_report import write as write_bench
from lab.bench_stats import round_orders
from lab.build import KernelBuild
from lab.ktap import Case
from lab.pipeline import Pipeline
from lab.protocol import BENCH_OVERDUE_GRACE_S
from lab.source import SourceTree

# Per round a guest boot (and the tenant's), per window its setup beside the
# settle time and the window, and as much again for a slow emulated level 1:
# a tenants run at the defaults took 6 min a round and hit the 1500 s timeout
# after 4 of its 6 rounds (run 20261203T112250Z-21a8).
ROUND_BOOT_S, WINDOW_SETUP_S, OVERHEAD_ROUND_S, SLACK = 120, 45, 120, 2.0


def reproduce_command(bench_opts: dict[str, Any]) -> str:
    """The bench's options as a command line (the modes are in the table); an
    option left empty, such as no driver arguments, is left out: `--x` with
    nothing after it would not parse."""
    given = {k: v for k, v in bench_opts.items() if k != "modes" and v not in ("", None)}
    return "nox -s bench -- " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items())


def level1_seconds(bench_opts: dict[str, Any]) -> float:
    """How long level 1 may take for the planned rounds, windows and overhead runs."""
    rounds = int(bench_opts["warmup"]) + int(bench_opts["rounds"])
    window = int(bench_opts["duration"]) + int(bench_opts["settle_s"]) + WINDOW_SETUP_S
    boots = ROUND_BOOT_S * (2 if bench_opts.get("scenario") == "tenants" else 1)
    # A mode that livelocks the guest holds its window open until level 1 withdraws it.
    per_round = boots + len(bench_opts["modes"]) * window + BENCH_OVERDUE_GRACE_S
    planned = rounds * per_round + int(bench_opts["overhead_rounds"]) * OVERHEAD_ROUND_S
    return SLACK * planned


def run(pipe: Pipeline, bench_opts: dict[str, Any]) -> int:
    return pipe.run_suite(lambda tree, builds: run_bench(pipe, tree, builds, bench_opts))


def run_bench(pipe: Pipeline, tree: SourceTree, builds: dict[str, KernelBuild], bench_opts: dict[str, Any]) -> None:
    binaries = {f"bin/{name}": Path(pipe.runner.which(name) or f"/usr/bin/{name}") for name in ("cyclictest", "hackbench")}
    level1, cfg, out = pipe.prepare_vms(tree, builds, binaries)
    cfg.update(bench_opts)
    cfg["boost_loader"] = cfg["pvsched"]["loader"]
    cfg["scx_loader"] = cfg["pvsched"]["scx_loader"]
    # The host chooses every round's order; level 1 follows it.
    cfg["orders"] = round_orders(list(bench_opts["modes"]), int(bench_opts["warmup"]) + int(bench_opts["rounds"]))
    raw = pipe.boot_level1(level1, "lab.invm.bench", cfg, out, "bench-level1.json")
    command = reproduce_command(bench_opts)
    bench, md = write_bench(pipe.run_dir, raw, command)
    pipe.record.bench = bench
    pipe.record.extra_markdown = md
    for name, m in bench["modes"].items():
        # Every measured round must have measured the mode: a missing window is no data.
        # A livelock level 1 witnessed and ended is the mode's result, said as such.
        tenant_ok = bench["scenario"] != "tenants" or bool(m.get("tenant"))
        measured = bool(m.get("guest")) and bool(m.get("host")) and tenant_ok
        livelocks = m.get("livelocks") or []
        ok = (measured or bool(livelocks)) and not m.get("errors") and m["rounds"] == bench_opts["rounds"]
        tenant = f" tenant={tenant_ok}" if bench["scenario"] == "tenants" else ""
        sides = f"guest={bool(m.get('guest'))} host={bool(m.get('host'))}{tenant}"
        why = f"{m['rounds']} of {bench_opts['rounds']} rounds, {sides} {m.get('errors')}"
        said = f"livelocked in {len(livelocks)} of {m['rounds']} rounds: {livelocks}" if livelocks else ""
        pipe.record.cases.append(Case(f"bench_{name}_measured", "level1", "passed" if ok else "failed", said if ok else f"{why} {said}"))
    lost = bench["rounds_lost"]
    pipe.record.cases.append(Case("bench_rounds_booted", "level1", "failed" if lost else "passed", str(lost) if lost else ""))
    # A splat anywhere during the bench fails it, as in a test run.
    pipe.scan_log((out / "level1-console.log").read_text(errors="replace"), "level1", "vm/level1-console.log")
    consoles = sorted(out.glob("level2-console-bench-*.log")) + sorted(out.glob("level2-console-tenant-*.log"))
    pipe.scan_log("".join(p.read_text() for p in consoles), "level2", "vm/level2-console-{bench,tenant}-*.log")
