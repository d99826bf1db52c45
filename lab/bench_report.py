"""Benchmark report: bench.json, the table with intervals, and latency plots.

Rounds are the unit: every mode is measured once per round (lab.invm.bench),
each mode's figure is the median of its rounds with a 95 % bootstrap
interval, and every comparison resamples whole rounds (lab.bench_stats). A
comparison whose interval holds its null value (1.0 for a ratio, 0 for a
share) is "not resolved", not a number. Ratios are what we claim: absolute
microseconds on a TCG-emulated host are not comparable to bare metal.

Shares of a gain: (vanilla - mode) / (vanilla - reference), with idle (no
load: a floor no scheduler reaches) and static (every vCPU thread FIFO, no
cap: what host scheduling alone reaches here) as references.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from pathlib import Path
from typing import Any

from lab import bench_stats as bs
from lab.protocol import BENCH_OVERDUE_GRACE_S

# RFC v1 cover letter (../shared/REFERENCE.md): cyclictest -i 500 in a
# 4-vCPU guest, host loaded with stress-ng; vanilla / dynamic / static.
PUBLISHED = {
    "vanilla": {"avg_us": 887, "max_us": 216835},
    "pvsched": {"avg_us": 21, "max_us": 13978},
    "static": {"avg_us": 25, "max_us": 1728},
}
STATS = ("avg_us", "p50_us", "p99_us", "max_us")
# The measured guest, per scenario (lab.invm.bench).
SCENARIO_TEXT = {
    "single": "cyclictest at SCHED_FIFO 90 in a {cpus}-vCPU KVM guest whose vCPU thread shares a host CPU with a stress-ng worker",
    "smp": "a cyclictest thread at SCHED_FIFO 90 pinned to each vCPU of a {cpus}-vCPU KVM guest, every vCPU thread on the"
    " host CPU a stress-ng worker loads",
    "tenants": "cyclictest at SCHED_FIFO 90 in a {cpus}-vCPU KVM guest beside a tenant VM of the same size (guest driver"
    " loaded, every vCPU busy), all vCPU threads on the host CPU a stress-ng worker loads",
}
# What each comparison is made on: the guest's average and p99, the host's
# p99, and KVM's own view (interrupt accepted -> the vCPU's next VM entry).
COMPARED = (("guest", "avg_us"), ("guest", "p99_us"), ("host", "p99_us"), ("kvm", "avg_us"), ("kvm", "p99_us"))
# Sides where less is the mode's gain (vanilla / mode); on "host" it is the mode's cost (mode / vanilla).
GAIN_SIDES = ("guest", "kvm")


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def gain_share(vanilla: float | None, mode: float | None, idle: float | None) -> float | None:
    """(vanilla - mode) / (vanilla - idle): 1.0 means all of the load's harm undone."""
    if vanilla is None or mode is None or idle is None or vanilla <= idle:
        return None
    return round((vanilla - mode) / (vanilla - idle), 3)


def measured_rounds(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The rounds that count: not the warmup, and the guest booted."""
    return [r for r in raw.get("rounds", []) if r["round"] >= int(raw.get("warmup_rounds", 0))]


def series(rounds: list[dict[str, Any]], mode: str, side: str, stat: str) -> list[float] | None:
    """One figure of a mode, a value per round; None if any round lacks it (absence of data is no data)."""
    values = []
    for r in rounds:
        window = r["modes"].get(mode) or {}
        data = window.get(side)
        # A livelocked window measured the livelock, not the mode: no figure.
        if not data or data.get(stat) is None or window.get("error") or window.get("livelock"):
            return None
        values.append(float(data[stat]))
    return values or None


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """bench.json from the level-1 report: per mode the median of its rounds
    with intervals, and every comparison with its interval."""
    rounds = measured_rounds(raw)
    names = list(dict.fromkeys(name for r in rounds for name in r["modes"]))  # a lost round measured none
    names = sorted(names, key=lambda m: list(PUBLISHED_ORDER).index(m) if m in PUBLISHED_ORDER else len(PUBLISHED_ORDER))
    modes: dict[str, Any] = {}
    for name in names:
        windows = [r["modes"][name] for r in rounds if name in r["modes"]]
        entry: dict[str, Any] = {
            "rounds": len(windows),
            "errors": [w["error"] for w in windows if w.get("error")],
            "livelocks": [w["livelock"] for w in windows if w.get("livelock")],
            "boosts": [w.get("boosts") for w in windows],
            "throttles": [w.get("throttles") for w in windows],
            "vm_exits": [w.get("vm_exits") for w in windows],
        }
        for side in ("guest", "host", "kvm"):
            per_round = {stat: series(rounds, name, side, stat) for stat in STATS}
            if per_round["avg_us"] is None:
                entry[side] = None
                continue
            # The median of the rounds, where bisect and the table read it; intervals beside.
            entry[side] = {stat: statistics.median(v) for stat, v in per_round.items() if v}
            entry[side]["per_round"] = per_round
            entry[side]["ci95"] = {stat: iv.to_dict() for stat, v in per_round.items() if v and (iv := bs.median_interval(v))}
        if raw.get("scenario") == "tenants":
            entry["tenant"] = _tenant_entry(rounds, name)
        modes[name] = entry

    def col(mode: str, side: str, stat: str) -> list[float] | None:
        return series(rounds, mode, side, stat) if mode in modes else None

    comparisons: dict[str, Any] = {}
    for name in modes:
        if name in ("idle", "vanilla"):
            continue
        c: dict[str, Any] = {}
        for side, stat in COMPARED:
            van, mode = col("vanilla", side, stat), col(name, side, stat)
            key = f"{side}_{stat.removesuffix('_us')}"
            if van and mode:
                iv = bs.ratio_interval(van, mode) if side in GAIN_SIDES else bs.ratio_interval(mode, van)
                c[f"{key}_ratio" if side in GAIN_SIDES else f"{key}_vs_vanilla"] = iv.to_dict() if iv else None
        van, mode = col("vanilla", "guest", "avg_us"), col(name, "guest", "avg_us")
        for ref in ("idle", "static"):
            other = col(ref, "guest", "avg_us")
            if van and mode and other and ref != name:
                iv = bs.share_interval(van, mode, other)
                c[f"guest_avg_share_of_{ref}_gain"] = iv.to_dict() if iv else None
        if raw.get("scenario") == "tenants":
            van_t, mode_t = tenant_series(rounds, "vanilla"), tenant_series(rounds, name)
            iv = bs.ratio_interval(mode_t, van_t) if van_t and mode_t else None
            c["tenant_cpu_share_vs_vanilla"] = iv.to_dict() if iv else None
        comparisons[name] = c
    return {
        "schema": 3,
        "scenario": raw.get("scenario", "single"),
        "guest_cpus": raw.get("guest_cpus"),
        "rounds": len(rounds),
        "warmup_rounds": int(raw.get("warmup_rounds", 0)),
        "orders": [r["order"] for r in raw.get("rounds", [])],
        "rounds_lost": [{"round": r["round"], "reason": r.get("reason", "")} for r in raw.get("rounds", []) if not r.get("boot_ok")],
        "shipped_cap_us": raw.get("shipped_cap_us"),
        "modes": modes,
        "comparisons": comparisons,
        "overhead": overhead(raw.get("overhead")),
        "published_rfc_v1": PUBLISHED,
    }


PUBLISHED_ORDER = ("idle", "vanilla", "pvsched", "pvsched-nocap", "scx", "static")


def tenant_series(rounds: list[dict[str, Any]], mode: str) -> list[float] | None:
    """The tenant VM's CPU share in a mode's windows, one per round; None if any round lacks it."""
    values = []
    for r in rounds:
        window = r["modes"].get(mode) or {}
        share = (window.get("tenant") or {}).get("cpu_share")
        if share is None or window.get("error"):
            return None
        values.append(float(share))
    return values or None


def _tenant_entry(rounds: list[dict[str, Any]], mode: str) -> dict[str, Any] | None:
    values = tenant_series(rounds, mode)
    if not values:
        return None
    iv = bs.median_interval(values)
    return {"cpu_share": statistics.median(values), "per_round": values, "ci95": iv.to_dict() if iv else None}


def overhead(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """The guest driver's cost on an idle host: hackbench with / without, paired by round."""
    if not raw:
        return None
    result = dict(raw)
    rates = {which: per_round_rates(raw, which) for which in ("without", "with")}
    for key, paired in (("with_vs_without", raw.get("seconds")), ("syscalls_with_vs_without", raw.get("syscall_seconds")),
                        ("exits_per_switch_with_vs_without", rates)):  # fmt: skip
        iv = _paired_ratio(paired or {})
        if iv is not None:
            result[key] = iv
    return result


def _paired_ratio(by_side: dict[str, list[float]]) -> dict[str, float] | None:
    """with / without, paired by round; None unless every round has both."""
    without, with_ = by_side.get("without") or [], by_side.get("with") or []
    if not without or len(without) != len(with_):
        return None
    iv = bs.ratio_interval(with_, without)
    return iv.to_dict() if iv is not None else None


def _overhead_cut_short(over: dict[str, Any]) -> bool:
    """The overhead guest did not run every planned round to the end (a timeout, a crash)."""
    runs = over.get("seconds") or {}
    done = [len(runs.get(which) or []) for which in ("without", "with")]
    planned = over.get("rounds_planned")
    return done[0] != done[1] or (planned is not None and min(done) < int(planned))


def per_round_rates(raw: dict[str, Any], which: str) -> list[float]:
    """KVM exits per guest context switch, one value per round ([] unless every round has both)."""
    exits, switches = (raw.get("exits") or {}).get(which) or [], (raw.get("switches") or {}).get(which) or []
    if not exits or len(exits) != len(switches) or not all(switches):
        return []
    return [e / s for e, s in zip(exits, switches, strict=True)]


def _interval(iv: dict[str, float] | None, null: float) -> str:
    if not iv:
        return "n/a"
    return bs.shown(bs.Interval(iv["value"], iv["low"], iv["high"]), null)


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.0f}" if v >= 100 else f"{v:.2f}"
    return str(v)


OVERDUE_TEXT = f"its length + {BENCH_OVERDUE_GRACE_S} s"


def markdown(bench: dict[str, Any], command: str) -> str:
    modes, comps = bench["modes"], bench["comparisons"]
    cap = list(bench.get("shipped_cap_us") or ["?", "?"])
    scenario = bench.get("scenario", "single")
    lines = [
        f"## Latency benchmark ({scenario})",
        "",
        f"`{command}`: {bench['rounds']} rounds (after {bench['warmup_rounds']} warmup), every mode once per round in a rotated",
        f"order. Guest: {SCENARIO_TEXT.get(scenario, scenario).format(cpus=bench.get('guest_cpus') or '?')};",
        "host: cyclictest at SCHED_FIFO 5 (below the boost priority 10) in the same window. Each figure is the median",
        "of the rounds [95 % bootstrap interval]; comparisons resample whole rounds. KVM irq->entry: level 1's KVM, from an",
        "interrupt accepted into the vCPU's APIC to the vCPU's next VM entry (bpf/irq_latency), the wait the host scheduler",
        "decides. `pvsched` runs at KVM's shipped cap",
        f"({cap[0]} us per {cap[1]} us{f', {cap[2]} us per VM' if len(cap) > 2 else ''}), `pvsched-nocap` with budget = period"
        " (the VM's: every vCPU's). Absolute microseconds are on a TCG-emulated host;",
        "compare ratios. RFC v1 (4-core bare metal) in parentheses.",
        "",
        "| mode | guest avg us | guest p99 us | guest max us | host p99 us | KVM irq->entry avg us | KVM irq->entry p99 us "
        "| boosts / throttles per round |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in modes.items():
        g, h, k = m.get("guest") or {}, m.get("host") or {}, m.get("kvm") or {}
        pub = PUBLISHED.get(name, {})

        def cell(side: dict[str, Any], stat: str) -> str:
            if not side:
                return "no data"
            iv = side.get("ci95", {}).get(stat)
            text = _fmt(side.get(stat)) + (f" [{_fmt(iv['low'])}, {_fmt(iv['high'])}]" if iv else "")
            return text

        if m.get("livelocks"):
            lines.append(f"| {name} | livelocked in {len(m['livelocks'])} of {m['rounds']} rounds: the guest never ended its window "
                         f"until level 1 withdrew the mode ({OVERDUE_TEXT}) | | | | | | |")  # fmt: skip
            continue
        avg = cell(g, "avg_us") + (f" ({pub['avg_us']})" if pub else "")
        counts = "-" if name not in ("pvsched", "pvsched-nocap", "scx") else (
            f"{_count(_median(m.get('boosts')))} / {_count(_median(m.get('throttles')))}")  # fmt: skip
        lines.append(f"| {name} | {avg} | {cell(g, 'p99_us')} | {cell(g, 'max_us')} | {cell(h, 'p99_us')} | "
                     f"{cell(k, 'avg_us')} | {cell(k, 'p99_us')} | {counts} |")  # fmt: skip
    lines += [
        "",
        "| mode | guest avg: vanilla / mode | guest p99: vanilla / mode | KVM irq->entry avg: vanilla / mode "
        "| KVM irq->entry p99: vanilla / mode | host p99: mode / vanilla | share of static's gain (avg) | share of idle's gap (avg) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, c in comps.items():
        lines.append(
            f"| {name} | {_interval(c.get('guest_avg_ratio'), 1.0)} | {_interval(c.get('guest_p99_ratio'), 1.0)} | "
            f"{_interval(c.get('kvm_avg_ratio'), 1.0)} | {_interval(c.get('kvm_p99_ratio'), 1.0)} | "
            f"{_interval(c.get('host_p99_vs_vanilla'), 1.0)} | {_interval(c.get('guest_avg_share_of_static_gain'), 0.0)} | "
            f"{_interval(c.get('guest_avg_share_of_idle_gain'), 0.0)} |"
        )
    if scenario == "tenants":
        lines += [
            "",
            "The tenant VM's CPU time per second of each window (1.0 = one host CPU), median [95 % interval], and mode / vanilla:",
            "",
            "| mode | tenant CPU share | tenant: mode / vanilla |",
            "| --- | --- | --- |",
        ]
        for name, m in modes.items():
            t = m.get("tenant") or {}
            iv = t.get("ci95")
            share = "no data" if not t else _fmt(t["cpu_share"]) + (f" [{_fmt(iv['low'])}, {_fmt(iv['high'])}]" if iv else "")
            vs = "-" if name in ("vanilla", "idle") else _interval((comps.get(name) or {}).get("tenant_cpu_share_vs_vanilla"), 1.0)
            lines.append(f"| {name} | {share} | {vs} |")
    errors = {name: m["errors"] for name, m in modes.items() if m.get("errors")}
    if errors or bench.get("rounds_lost"):
        lines += ["", f"Windows without data: {errors or 'none'}; rounds lost: {bench.get('rounds_lost') or 'none'}."]
    over = bench.get("overhead") or {}
    pairs = len((over.get("seconds") or {}).get("with") or [])
    loaded_with = f", the driver loaded with {over['driver_args']}" if over.get("driver_args") else ""
    cut_short = _overhead_cut_short(over)
    if cut_short and pairs:
        loaded_with += f"; the guest ended after them, of {over.get('rounds_planned')} rounds planned ({over.get('boot_reason') or '?'})"
    if "with_vs_without" in over:
        lines += ["", f"Guest driver overhead on an idle host (hackbench time with / without, {pairs} pairs in turns"
                  f"{loaded_with}): {_interval(over['with_vs_without'], 1.0)}"]  # fmt: skip
    elif cut_short:
        runs = over.get("seconds") or {}
        lines += ["", f"Guest driver overhead: the overhead guest ended after {len(runs.get('without') or [])} hackbench "
                  f"runs without the driver and {pairs} with it, of {over.get('rounds_planned')} rounds planned "
                  f"({over.get('boot_reason') or 'no reason given'}): no interval."]  # fmt: skip
    elif pairs:
        lines += ["", f"Guest driver overhead on an idle host: {pairs} hackbench pairs, too few for an interval "
                  f"(at least {bs.MIN_ROUNDS}: `--overhead-rounds`)."]  # fmt: skip
    if "syscalls_with_vs_without" in over:
        lines += ["", f"Guest driver overhead on a system-call loop (syscall_loop time with / without, {pairs} pairs "
                  f"in turns{loaded_with}): {_interval(over['syscalls_with_vs_without'], 1.0)}"]  # fmt: skip
    if "extra_exits_per_switch" in over:
        lines += [
            "",
            f"KVM exits per guest context switch (hackbench): {over['exits_per_switch_without']} without the driver, "
            f"{over['exits_per_switch_with']} with it: {over['extra_exits_per_switch']} extra per switch "
            "(each switch writes the shared area); with / without, paired by round: "
            f"{_interval(over.get('exits_per_switch_with_vs_without'), 1.0)}.",
        ]
    lines += [
        "",
        "![medians and intervals](bench-intervals.png)",
        "",
        "![guest latency](bench-guest.png) ![host latency](bench-host.png)",
        "",
    ]
    return "\n".join(lines)


def _count(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def _median(values: list[Any] | None) -> float | None:
    got = [float(v) for v in values or [] if v is not None]
    return statistics.median(got) if got else None


def pooled_histogram(rounds: list[dict[str, Any]], mode: str, side: str) -> list[tuple[float, int]]:
    """A mode's histogram over all measured rounds, bucket by bucket."""
    counts: dict[float, int] = {}
    for r in rounds:
        data = (r["modes"].get(mode) or {}).get(side) or {}
        for us, count in data.get("histogram") or []:
            counts[float(us)] = counts.get(float(us), 0) + int(count)
    return sorted(counts.items())


def plot(bench: dict[str, Any], raw: dict[str, Any], out: Path) -> list[Path]:
    """Per mode the medians with their intervals, and latency CDFs pooled over rounds. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    names = list(bench["modes"])
    fig, axes = plt.subplots(1, len(COMPARED), figsize=(4 * len(COMPARED), 0.5 * len(names) + 1.8), sharey=True)
    for ax, (side, stat) in zip(axes, COMPARED, strict=True):
        for y, name in enumerate(names):
            iv = ((bench["modes"][name].get(side) or {}).get("ci95") or {}).get(stat)
            if iv:
                ax.errorbar([iv["value"]], [y], xerr=[[iv["value"] - iv["low"]], [iv["high"] - iv["value"]]], fmt="o", capsize=4)
        ax.set_yticks(range(len(names)), names)
        ax.set_xscale("log")
        ax.set_title(f"{side} {stat.removesuffix('_us')} (us)")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"median of {bench['rounds']} rounds, 95 % bootstrap interval")
    fig.tight_layout()
    path = out / "bench-intervals.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    rounds = measured_rounds(raw)
    for side in ("guest", "host"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name in names:
            hist = pooled_histogram(rounds, name, side)
            total = sum(c for _, c in hist) or 1
            xs, ys, seen = [], [], 0
            for us, count in hist:
                seen += count
                xs.append(max(us, 1))
                ys.append(seen / total)
            if xs:
                ax.step(xs, ys, where="post", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("latency (us)")
        ax.set_ylabel("fraction of samples")
        ax.set_title(f"{side} cyclictest latency CDF, {len(rounds)} rounds pooled")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        path = out / f"bench-{side}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def write(out: Path, raw: dict[str, Any], command: str) -> tuple[dict[str, Any], str]:
    bench = summarize(raw)
    (out / "bench.json").write_text(json.dumps(bench, indent=2) + "\n")
    with contextlib.suppress(ImportError):  # the table still stands; `nox -s bench` installs matplotlib
        plot(bench, raw, out)
    md = markdown(bench, command)
    (out / "bench.md").write_text(md)
    return bench, md
