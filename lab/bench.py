"""Benchmark report: bench.json, the RFC v1-style table, and latency plots.

Ratios are what we claim: absolute microseconds on a TCG-emulated host are
not comparable to bare metal. Besides vanilla/mode we report the share of
the achievable gain, (vanilla - mode) / (vanilla - idle), which travels
between machines because it is relative to this machine's own floor.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

# RFC v1 cover letter (../shared/REFERENCE.md): cyclictest -i 500 in a
# 4-vCPU guest, host loaded with stress-ng; vanilla / dynamic / static.
PUBLISHED = {
    "vanilla": {"avg_us": 887, "max_us": 216835},
    "pvsched": {"avg_us": 21, "max_us": 13978},
    "static": {"avg_us": 25, "max_us": 1728},
}
SUMMARY_KEYS = ("avg_us", "p50_us", "p99_us", "max_us", "samples")


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def gain_share(vanilla: float | None, mode: float | None, idle: float | None) -> float | None:
    """(vanilla - mode) / (vanilla - idle): 1.0 means all of the load's harm undone."""
    if vanilla is None or mode is None or idle is None or vanilla <= idle:
        return None
    return round((vanilla - mode) / (vanilla - idle), 3)


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """bench.json from the level-1 report: per-mode summaries and the derived figures."""
    modes: dict[str, Any] = {}
    for name, run in raw["modes"].items():
        entry: dict[str, Any] = {
            "vm_exits": run.get("vm_exits"),
            "boosts": run.get("boosts"),
            "throttles": run.get("throttles"),
            "boosted_ms": run.get("boosted_ms"),
            "error": run.get("error", ""),
        }
        for side in ("guest", "host"):
            data = run.get(side)
            entry[side] = {k: data[k] for k in SUMMARY_KEYS} if data else None
        guest = entry["guest"]
        # Exits per guest wakeup: comparable between modes, unlike raw counts
        # (a guest kept waiting exits less).
        if entry["vm_exits"] is not None and guest and guest.get("samples"):
            entry["vm_exits_per_sample"] = round(entry["vm_exits"] / guest["samples"], 3)
        modes[name] = entry

    def metric(mode: str, side: str, key: str) -> float | None:
        data = modes.get(mode, {}).get(side)
        return float(data[key]) if data and data.get(key) is not None else None

    derived: dict[str, Any] = {}
    for name in modes:
        if name in ("idle", "vanilla"):
            continue
        derived[name] = {
            "guest_avg_ratio": ratio(metric("vanilla", "guest", "avg_us"), metric(name, "guest", "avg_us")),
            "guest_max_ratio": ratio(metric("vanilla", "guest", "max_us"), metric(name, "guest", "max_us")),
            "guest_avg_gain_share": gain_share(
                metric("vanilla", "guest", "avg_us"), metric(name, "guest", "avg_us"), metric("idle", "guest", "avg_us")
            ),  # fmt: skip
            "guest_max_gain_share": gain_share(
                metric("vanilla", "guest", "max_us"), metric(name, "guest", "max_us"), metric("idle", "guest", "max_us")
            ),  # fmt: skip
            "host_p99_vs_vanilla": ratio(metric(name, "host", "p99_us"), metric("vanilla", "host", "p99_us")),
        }
    return {"modes": modes, "ratios": derived, "overhead": raw.get("overhead"), "published_rfc_v1": PUBLISHED}


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.0f}" if v >= 100 else f"{v:.2f}"
    return str(v)


def markdown(bench: dict[str, Any], command: str) -> str:
    modes, ratios = bench["modes"], bench["ratios"]
    lines = [
        "## Latency benchmark",
        "",
        f"`{command}`. Guest: cyclictest at SCHED_FIFO 90 in a 1-vCPU KVM guest whose vCPU thread shares a host CPU with a",
        "stress-ng worker; host: cyclictest at SCHED_FIFO 5 (below the boost priority 10, 4x the guest's interval) at the same time.",
        "Absolute microseconds here are on a TCG-emulated host; compare ratios. RFC v1 (4-core bare metal) in brackets.",
        "",
        "| mode | guest avg us | guest p99 us | guest max us | host p99 us | host max us | VM exits / sample "
        "| boosts / throttles | avg ratio | max ratio | avg gain share | max gain share |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in modes.items():
        g, h = m.get("guest") or {}, m.get("host") or {}
        pub = PUBLISHED.get(name, {})
        avg = _fmt(g.get("avg_us")) + (f" [{pub['avg_us']}]" if pub else "")
        mx = _fmt(g.get("max_us")) + (f" [{pub['max_us']}]" if pub else "")
        r = ratios.get(name, {})
        lines.append(
            f"| {name} | {avg} | {_fmt(g.get('p99_us'))} | {mx} | {_fmt(h.get('p99_us'))} | {_fmt(h.get('max_us'))} | "
            f"{_fmt(m.get('vm_exits_per_sample'))} | {_fmt(m.get('boosts'))} / {_fmt(m.get('throttles'))} | "
            f"{_fmt(r.get('guest_avg_ratio'))} | {_fmt(r.get('guest_max_ratio'))} | "
            f"{_fmt(r.get('guest_avg_gain_share'))} | {_fmt(r.get('guest_max_gain_share'))} |"
        )
    over = bench.get("overhead") or {}
    if "overhead_pct" in over:
        lines += ["", f"Guest driver overhead on an idle host (hackbench, best of runs): {over['overhead_pct']} %"]
    if "extra_exits_per_switch" in over:
        lines += [
            "",
            f"KVM exits per guest context switch (hackbench): {over['exits_per_switch_without']} without the driver, "
            f"{over['exits_per_switch_with']} with it: {over['extra_exits_per_switch']} extra per switch "
            "(each switch writes the shared area).",
        ]
    lines += ["", "![guest latency](bench-guest.png) ![host latency](bench-host.png)", ""]
    return "\n".join(lines)


def plot(raw: dict[str, Any], out: Path) -> list[Path]:
    """Latency CDFs per mode on a log axis, guest and host. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for side in ("guest", "host"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, run in raw["modes"].items():
            data = run.get(side)
            if not data or not data.get("histogram"):
                continue
            total = sum(c for _, c in data["histogram"]) or 1
            xs, ys, seen = [], [], 0
            for us, count in data["histogram"]:
                seen += count
                xs.append(max(us, 1))
                ys.append(seen / total)
            ax.step(xs, ys, where="post", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("latency (us)")
        ax.set_ylabel("fraction of samples")
        ax.set_title(f"{side} cyclictest latency CDF")
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
        plot(raw, out)
    md = markdown(bench, command)
    (out / "bench.md").write_text(md)
    return bench, md
