from __future__ import annotations

from lab.bench import gain_share, markdown, ratio, summarize
from lab.invm.bench import parse_guest_result, parse_histfile

HIST = """\
000010 000050
000020 000040
000500 000009
030000 000001
# Total: 000000100
# Min Latencies: 00010
# Avg Latencies: 00123
# Max Latencies: 34332
# Histogram Overflows: 00001
"""


def test_histfile_percentiles_and_summary() -> None:
    h = parse_histfile(HIST)
    assert h["samples"] == 100
    assert h["avg_us"] == 123 and h["max_us"] == 34332
    assert h["p50_us"] == 10  # 50 of 100 samples at 10 us
    assert h["p99_us"] == 500  # the 99th sample is in the 500 us bucket
    assert h["overflows"] == 1


def test_guest_result_between_markers() -> None:
    console = "boot noise\nLAB-BENCH-HIST-BEGIN\n" + HIST + "LAB-BENCH-HIST-END\nLAB-GUEST-DONE\n"
    assert parse_guest_result(console)["max_us"] == 34332
    assert parse_guest_result("LAB-BENCH-HIST-BEGIN only") is None


def test_ratios_and_gain_share() -> None:
    assert ratio(2393, 848) == 2.82
    assert ratio(1, 0) is None and ratio(None, 1) is None
    # Measured here: idle 848, vanilla 2393; a mode at 1000 undoes 90% of the harm.
    assert gain_share(2393, 1000, 848) == 0.902
    assert gain_share(2393, 2393, 848) == 0.0
    assert gain_share(800, 700, 848) is None  # load did no harm: no share to claim


def _run(avg: float, mx: float, p99: float) -> dict[str, object]:
    side = {"samples": 10, "avg_us": avg, "p50_us": avg, "p99_us": p99, "max_us": mx, "overflows": 0, "histogram": [[avg, 10]]}
    return {"guest": side, "host": dict(side), "vm_exits": 1000, "boosts": 5, "error": ""}


def test_summary_and_table_side_by_side() -> None:
    raw = {"modes": {"idle": _run(848, 7770, 900), "vanilla": _run(2393, 34332, 3000), "pvsched": _run(1000, 9000, 3100)}}
    bench = summarize(raw)
    r = bench["ratios"]["pvsched"]
    assert r["guest_avg_ratio"] == 2.39
    assert r["guest_avg_gain_share"] == 0.902
    assert r["host_p99_vs_vanilla"] == 1.03
    assert "idle" not in bench["ratios"] and "vanilla" not in bench["ratios"]
    table = markdown(bench, "nox -s bench")
    assert "| pvsched | 1000 [21] |" in table  # ours beside RFC v1's published figure
    assert bench["modes"]["pvsched"]["vm_exits_per_sample"] == 100.0
    assert "| 100 | 5 / n/a |" in table  # exits per sample, boosts / throttles


def test_exits_per_switch_with_and_without_the_driver() -> None:
    from lab.invm.bench import exits_per_switch

    got = exits_per_switch({"without": [500, 700], "with": [660, 540]}, {"without": [1000, 1400], "with": [1100, 1300]})
    assert got == {"exits_per_switch_without": 0.5, "exits_per_switch_with": 0.5, "extra_exits_per_switch": 0.0}
    got = exits_per_switch({"without": [500], "with": [1200]}, {"without": [1000], "with": [1000]})
    assert got["extra_exits_per_switch"] == 0.7  # a driver that exited on 7 of 10 switches shows
    assert exits_per_switch({"without": [500], "with": []}, {"without": [1000], "with": []}) == {}
    assert exits_per_switch({"without": [5], "with": [5, 6]}, {"without": [10], "with": [10]}) == {}  # rounds must pair
