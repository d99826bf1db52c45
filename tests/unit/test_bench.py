from __future__ import annotations

import time

import pytest

from lab.bench_report import gain_share, markdown, ratio, summarize
from lab.invm.bench import parse_guest_windows, parse_histfile

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


def test_guest_windows_between_markers_named_by_mode() -> None:
    console = ("boot noise\nLAB-BENCH-HIST-BEGIN vanilla\n" + HIST + "LAB-BENCH-HIST-END vanilla\n"
               "LAB-BENCH-HIST-BEGIN pvsched-nocap\n" + HIST.replace("34332", "999") + "LAB-BENCH-HIST-END pvsched-nocap\n"
               "LAB-BENCH-HIST-BEGIN static\n000010 000050\n")  # fmt: skip
    windows = parse_guest_windows(console)
    assert windows["vanilla"]["max_us"] == 34332 and windows["pvsched-nocap"]["max_us"] == 999
    assert "static" not in windows  # cut short: no data, not a partial histogram


def test_ratios_and_gain_share() -> None:
    assert ratio(2393, 848) == 2.82
    assert ratio(1, 0) is None and ratio(None, 1) is None
    # Measured here: idle 848, vanilla 2393; a mode at 1000 undoes 90% of the harm.
    assert gain_share(2393, 1000, 848) == 0.902
    assert gain_share(2393, 2393, 848) == 0.0
    assert gain_share(800, 700, 848) is None  # load did no harm: no share to claim


def _window(avg: float, p99: float | None = None, error: str = "") -> dict[str, object]:
    side = {"samples": 10, "avg_us": avg, "p50_us": avg, "p99_us": p99 or 2 * avg, "max_us": 10 * avg, "overflows": 0,
            "histogram": [[avg, 10]]}  # fmt: skip
    return {"guest": side, "host": dict(side), "vm_exits": 1000, "boosts": 5, "throttles": 1, "error": error}


def _raw(per_mode: dict[str, list[float]], warmup_value: float = 99999.0) -> dict[str, object]:
    """Round 0 is the warmup (absurd values that must not count), then one round per value."""
    names = list(per_mode)
    rounds = [{"round": 0, "order": names, "boot_ok": True, "modes": {m: _window(warmup_value) for m in names}}]
    for i in range(len(next(iter(per_mode.values())))):
        order = names[i % len(names) :] + names[: i % len(names)]
        rounds.append({"round": i + 1, "order": order, "boot_ok": True, "modes": {m: _window(per_mode[m][i]) for m in names}})
    return {"warmup_rounds": 1, "shipped_cap_us": [500000, 1000000], "rounds": rounds}


def test_summary_medians_intervals_and_comparisons() -> None:
    drift = [1.0, 1.3, 0.8, 1.1, 0.9]
    raw = _raw({
        "idle": [800 * d for d in drift],
        "vanilla": [2400 * d for d in drift],
        "pvsched": [1200 * d for d in drift],  # half of vanilla in every round
        "scx": [2400 * d * f for d, f in zip(drift, [1.1, 0.9, 1.05, 0.95, 1.0], strict=True)],  # vanilla within noise
        "static": [1000 * d for d in drift],
    })  # fmt: skip
    bench = summarize(raw)
    assert bench["rounds"] == 5 and bench["warmup_rounds"] == 1
    pv = bench["modes"]["pvsched"]["guest"]
    assert pv["avg_us"] == 1200.0  # the median of the rounds; the warmup's 99999 is not among them
    assert pv["ci95"]["avg_us"]["low"] <= 1200.0 <= pv["ci95"]["avg_us"]["high"]
    c = bench["comparisons"]["pvsched"]
    assert abs(c["guest_avg_ratio"]["value"] - 2.0) < 1e-6 and c["guest_avg_ratio"]["low"] > 1.0
    # (2400 - 1200) / (2400 - 1000) of static's gain, (2400 - 1200) / (2400 - 800) of the idle gap.
    assert abs(c["guest_avg_share_of_static_gain"]["value"] - 1200 / 1400) < 1e-3
    assert abs(c["guest_avg_share_of_idle_gain"]["value"] - 0.75) < 1e-3
    assert "idle" not in bench["comparisons"] and "vanilla" not in bench["comparisons"]
    table = markdown(bench, "nox -s bench")
    assert "| pvsched | 1200 [" in table and "(21) |" in table  # ours with its interval, RFC v1's beside
    # scx: vanilla within noise, so not printed as a number.
    assert "| scx | not resolved (" in table
    assert "| pvsched | 2.00 [" in table


def test_a_window_without_data_is_no_data_for_the_mode() -> None:
    raw = _raw({"vanilla": [2400.0, 2500.0], "pvsched": [1200.0, 1300.0]})
    raw["rounds"][2]["modes"]["pvsched"] = _window(1300.0, error="start: policy did not attach")  # type: ignore[index]
    bench = summarize(raw)
    assert bench["modes"]["pvsched"]["guest"] is None
    assert bench["modes"]["pvsched"]["errors"] == ["start: policy did not attach"]
    assert "guest_avg_ratio" not in bench["comparisons"]["pvsched"]


def test_exits_per_switch_with_and_without_the_driver() -> None:
    from lab.invm.bench import exits_per_switch

    got = exits_per_switch({"without": [500, 700], "with": [660, 540]}, {"without": [1000, 1400], "with": [1100, 1300]})
    assert got == {"exits_per_switch_without": 0.5, "exits_per_switch_with": 0.5, "extra_exits_per_switch": 0.0}
    got = exits_per_switch({"without": [500], "with": [1200]}, {"without": [1000], "with": [1000]})
    assert got["extra_exits_per_switch"] == 0.7  # a driver that exited on 7 of 10 switches shows
    assert exits_per_switch({"without": [500], "with": []}, {"without": [1000], "with": []}) == {}
    assert exits_per_switch({"without": [5], "with": [5, 6]}, {"without": [10], "with": [10]}) == {}  # rounds must pair


def test_irq_latency_buckets_and_summary() -> None:
    from lab.invm.bench import irq_bucket_bounds, parse_irq_latency

    assert irq_bucket_bounds(3) == (3, 4)
    assert irq_bucket_bounds(8) == (4, 5) and irq_bucket_bounds(11) == (7, 8)  # 4..7 us, one bucket each
    assert irq_bucket_bounds(4 * 10 + 2) == (6 << 8, 7 << 8)  # [1536, 1792) us
    bounds = [irq_bucket_bounds(idx) for idx in [0, 1, 2, 3, *range(8, 160)]]  # the buckets bpf/irq_latency.bpf.c fills
    assert all(lo < hi for lo, hi in bounds)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))  # contiguous
    # 98 entries within 3 us, one at 1.6 ms, one at 20 ms: p99 is the 1.6 ms bucket's top.
    dump = {"count": 100, "sum_us": 98 * 2 + 1600 + 20000, "max_us": 20000, "buckets": [[2, 98], [42, 1], [4 * 14 + 0, 1]]}
    side = parse_irq_latency(dump)
    assert side is not None and side["samples"] == 100 and side["avg_us"] == 218.0
    assert side["p50_us"] == 3.0 and side["p99_us"] == 1792.0 and side["max_us"] == 20000.0
    assert parse_irq_latency({"count": 0, "sum_us": 0, "max_us": 0, "buckets": []}) is None  # no data is no data


def test_kvm_view_is_compared_as_a_gain() -> None:
    drift = [1.0, 1.3, 0.8, 1.1, 0.9]
    raw = _raw({"vanilla": [2400 * d for d in drift], "pvsched": [1200 * d for d in drift]})
    for r in raw["rounds"]:  # type: ignore[union-attr]
        for w in r["modes"].values():
            w["kvm"] = dict(w["guest"], avg_us=w["guest"]["avg_us"] / 10)
    bench = summarize(raw)
    assert abs(bench["comparisons"]["pvsched"]["kvm_avg_ratio"]["value"] - 2.0) < 1e-3
    assert "| pvsched | 2.00 [" in markdown(bench, "nox -s bench")


def test_exits_per_switch_get_an_interval_over_rounds_and_need_every_round() -> None:
    from lab.bench_report import overhead

    raw = {"seconds": {"without": [1.0, 1.1, 1.0, 1.05, 0.95], "with": [1.0, 1.0, 1.1, 0.95, 1.05]},
           "exits": {"without": [100, 110, 90, 105, 95], "with": [100, 112, 91, 104, 94]},
           "switches": {"without": [1000, 1100, 900, 1050, 950], "with": [1000, 1100, 900, 1050, 950]}}  # fmt: skip
    iv = overhead(raw)["exits_per_switch_with_vs_without"]  # type: ignore[index]
    assert iv["low"] <= 1.0 <= iv["high"]  # no extra exits: not resolved from 1
    raw["exits"]["with"] = [200, 221, 181, 210, 190]  # type: ignore[index]
    iv = overhead(raw)["exits_per_switch_with_vs_without"]  # type: ignore[index]
    assert iv["low"] > 1.5  # one exit more per ten switches: resolved
    raw["switches"]["with"] = [1000, 0, 900, 1050, 950]  # type: ignore[index]
    assert "exits_per_switch_with_vs_without" not in overhead(raw)  # type: ignore[operator]


def test_too_few_overhead_pairs_say_so_instead_of_an_interval() -> None:
    raw = _raw({"vanilla": [2400.0, 2500.0, 2300.0, 2450.0, 2350.0]})
    raw["overhead"] = {"seconds": {"without": [3.612, 4.16, 3.286], "with": [4.024, 4.354, 3.748]}}
    table = markdown(summarize(raw), "x")
    assert "3 hackbench pairs, too few for an interval (at least 5" in table
    raw["overhead"] = {"seconds": {"without": [3.6, 4.2, 3.3, 3.9, 3.5], "with": [3.7, 4.0, 3.4, 3.8, 3.6]}}
    assert "hackbench time with / without, 5 pairs in turns): not resolved (" in markdown(summarize(raw), "x")


def test_the_syscall_loop_gets_its_own_interval_and_needs_every_pair() -> None:
    raw = _raw({"vanilla": [2400.0, 2500.0, 2300.0, 2450.0, 2350.0]})
    hackbench = {"without": [3.6, 4.2, 3.3, 3.9, 3.5], "with": [3.7, 4.0, 3.4, 3.8, 3.6]}
    # 10 % slower with the driver in every pair: resolved, however hackbench came out.
    calls = {"without": [2.0, 2.1, 1.9, 2.05, 1.95], "with": [2.2, 2.31, 2.09, 2.255, 2.145]}
    raw["overhead"] = {"seconds": hackbench, "syscall_seconds": calls}
    table = markdown(summarize(raw), "x")
    assert "syscall_loop time with / without, 5 pairs in turns): 1.10 [" in table
    raw["overhead"]["driver_args"] = "preempt_marks=0"
    assert "in turns, the driver loaded with preempt_marks=0): 1.10 [" in markdown(summarize(raw), "x")
    # A round whose loop printed nothing leaves the pairs uneven: no interval rather than a wrong one.
    raw["overhead"] = {"seconds": hackbench, "syscall_seconds": {"without": calls["without"], "with": calls["with"][:4]}}
    assert "syscall_loop" not in markdown(summarize(raw), "x")


# The end of a real `cyclictest -t 2 -a -h 200 --histfile` (this machine, 1 s):
# a column per thread.
HIST_TWO_THREADS = """\
# Histogram
000008 000002\t000043
000009 000003\t000102
000250 000000\t000000
# Total: 000000998 000000999
# Min Latencies: 00008 00005
# Avg Latencies: 00023 00011
# Max Latencies: 00249 00895
# Histogram Overflows: 00002 00001
# Histogram Overflow at cycle number:
# Thread 0: 00086 00093
# Thread 1: 00897
"""


def test_a_histfile_of_several_threads_sums_them() -> None:
    h = parse_histfile(HIST_TWO_THREADS)
    assert h["samples"] == 1997 and h["overflows"] == 3
    assert h["max_us"] == 895  # the worst thread's
    assert h["avg_us"] == round((23 * 998 + 11 * 999) / 1997, 2)  # weighted by each thread's samples
    assert h["histogram"] == [[8, 45], [9, 105]]


def test_the_guests_binning_sums_the_threads_columns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import re
    import shutil
    import subprocess

    import pytest

    from lab.paths import REPO

    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox (the guest's shell and awk) is not installed")
    script = (REPO / "lab/invm/guest_init.sh").read_text()
    function = re.search(r"^bin_histfile\(\) \{.*?^\}$", script, re.MULTILINE | re.DOTALL)
    assert function
    (tmp_path / "hist").write_text(HIST_TWO_THREADS.replace("000009 000003\t000102", "000150 000003\t000102"))
    out = subprocess.run([busybox, "sh", "-c", f"{function[0]}\nbin_histfile {tmp_path / 'hist'}"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "000008 000045" in out and "000150 000105" in out  # 150 us: its 10 us bin, both threads
    assert parse_histfile(out)["samples"] == 1997


def test_the_driver_goes_first_in_every_other_overhead_round() -> None:
    import re
    import shutil
    import subprocess

    import pytest

    from lab.paths import REPO

    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox (the guest's shell) is not installed")
    script = (REPO / "lab/invm/guest_init.sh").read_text()
    function = re.search(r"^overhead_order\(\) \{.*?\}$", script, re.MULTILINE)
    assert function and "$(overhead_order" in script
    out = subprocess.run([busybox, "sh", "-c", f"{function[0]}\nfor r in 1 2 3 4; do echo $(overhead_order $r); done"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.splitlines() == ["without with", "with without", "without with", "with without"]


def test_tenant_share_per_mode_with_its_interval() -> None:
    raw = _raw({"vanilla": [2400.0, 2500.0, 2300.0, 2450.0, 2350.0], "pvsched": [1200.0, 1300.0, 1250.0, 1225.0, 1275.0]})
    raw["scenario"] = "tenants"
    for r in raw["rounds"]:  # type: ignore[attr-defined]
        r["modes"]["vanilla"]["tenant"] = {"cpu_share": 0.50}
        r["modes"]["pvsched"]["tenant"] = {"cpu_share": 0.40}
    bench = summarize(raw)
    assert bench["scenario"] == "tenants"
    assert bench["modes"]["pvsched"]["tenant"]["cpu_share"] == 0.40
    assert abs(bench["comparisons"]["pvsched"]["tenant_cpu_share_vs_vanilla"]["value"] - 0.8) < 1e-6
    table = markdown(bench, "nox -s bench -- --scenario tenants")
    assert "## Latency benchmark (tenants)" in table and "| pvsched | 0.40 [" in table
    # One window without the tenant's figure: no data for that mode.
    raw["rounds"][2]["modes"]["pvsched"]["tenant"] = None  # type: ignore[index]
    bench = summarize(raw)
    assert bench["modes"]["pvsched"]["tenant"] is None
    assert "| pvsched | no data |" in markdown(bench, "x")


def test_a_round_that_lost_its_tenant_measures_no_mode_but_the_others_count() -> None:
    raw = _raw({"vanilla": [2400.0, 2500.0], "pvsched": [1200.0, 1300.0]})
    raw["rounds"][1] = {"round": 1, "order": ["vanilla", "pvsched"], "boot_ok": False,  # type: ignore[index]
                        "reason": "the tenant VM did not start its load", "modes": {}}  # fmt: skip
    bench = summarize(raw)
    assert list(bench["modes"]) == ["vanilla", "pvsched"]  # named by the rounds that measured them
    assert bench["modes"]["pvsched"]["guest"] is None  # a round without the mode: no data
    assert bench["rounds_lost"] == [{"round": 1, "reason": "the tenant VM did not start its load"}]


def test_each_scenario_sizes_its_guest_unless_told() -> None:
    import pytest

    from lab.cli import _options, parser

    def cpus(*argv: str) -> int:
        return _options(parser().parse_args(["bench", *argv])).guest_cpus

    assert cpus() == 1 and cpus("--scenario", "tenants") == 1
    assert cpus("--scenario", "smp") == 2
    assert cpus("--scenario", "smp", "--guest-cpus", "3") == 3
    assert _options(parser().parse_args(["run"])).guest_cpus == 2  # the test run's own default
    with pytest.raises(SystemExit):
        parser().parse_args(["bench", "--scenario", "many"])


def test_the_guest_runs_a_cyclictest_thread_per_vcpu_only_in_smp() -> None:
    from lab.invm.bench import guest_threads

    assert guest_threads({"scenario": "smp", "guest_cpus": 2}) == 2
    assert guest_threads({"scenario": "single", "guest_cpus": 2}) == 1
    assert guest_threads({"scenario": "tenants", "guest_cpus": 1}) == 1
    assert guest_threads({"guest_cpus": 1}) == 1  # a bisect step's config names none


def test_the_tenants_cpu_time_comes_from_its_vcpu_threads_and_needs_all_of_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import threading

    from lab.invm.bench import Tenant, thread_cpu_ns
    from lab.runner import Runner

    me = threading.get_native_id()
    before = thread_cpu_ns(me)
    assert before is not None
    # Run until the kernel accounts it: a running thread's schedstat moves
    # at ticks and switches, so one short burst can fall inside one tick.
    deadline = time.monotonic() + 5
    while thread_cpu_ns(me) == before and time.monotonic() < deadline:
        sum(range(100000))
    assert thread_cpu_ns(me) > before  # type: ignore[operator]
    tenant = Tenant(Runner(tmp_path / "logs"), {"guest_cpus": 1, "kvm_timeout": 1}, tmp_path, 0)
    tenant.threads = {0: me}
    assert tenant.cpu_ns() is not None
    tenant.threads = {0: me, 1: 2**22 + os.getpid()}  # a thread that is gone: no figure, not a smaller one
    assert tenant.cpu_ns() is None


def test_a_window_the_guest_never_reached_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lab.invm.bench import RoundRun
    from lab.runner import Runner

    bench = RoundRun(Runner(tmp_path / "logs"), {"guest_cpus": 2}, tmp_path, 1, ["static", "idle"], (500000, 1000000, 1000000))
    assert bench.windows["idle"].result(None)["error"] == "the window never opened (the guest stopped before it)"
    late = bench.windows["static"]
    late.started_at, late.ready_at = 10.0, 12.0  # set up after the guest opened it
    assert late.result(None)["error"] == "the mode was not in place when the window opened"


def test_level1_gets_the_time_its_planned_rounds_need() -> None:
    from lab.cli import parser
    from lab.suites.bench import level1_seconds

    def planned(*argv: str) -> dict[str, object]:
        a = parser().parse_args(["bench", *argv])
        return {"warmup": a.warmup, "rounds": a.rounds, "duration": a.duration, "settle_s": a.settle_s, "modes": a.modes,
                "overhead_rounds": a.overhead_rounds, "scenario": a.scenario}  # fmt: skip

    # The defaults' tenants run took 6 min a round (6 rounds) plus the overhead runs: far beyond 1500 s.
    assert level1_seconds(planned("--scenario", "tenants")) > 6 * 360 + 3 * 60
    assert level1_seconds(planned()) > 23 * 60  # the single scenario's defaults took 23 min
    assert level1_seconds(planned("--rounds", "10")) > level1_seconds(planned())


def test_a_livelocked_window_is_the_modes_result_not_a_figure() -> None:
    raw = _raw({"vanilla": [2400.0, 2500.0], "static": [1000.0, 1100.0]})
    livelock = {"withdrawn_after_s": 42.0, "window_ended_after_s": 3.5}
    for r in raw["rounds"][1:]:
        r["modes"]["static"]["livelock"] = livelock  # type: ignore[index]
    bench = summarize(raw)
    static = bench["modes"]["static"]
    assert static["guest"] is None and static["livelocks"] == [livelock, livelock] and not static["errors"]
    assert "guest_avg_ratio" not in bench["comparisons"]["static"]
    assert "| static | livelocked in 2 of 2 rounds" in markdown(bench, "nox -s bench")
    assert summarize(_raw({"static": [1000.0, 1100.0]}))["modes"]["static"]["livelocks"] == []


def test_level1_withdraws_a_mode_whose_window_outlives_its_length(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    from lab.invm import bench as invm_bench
    from lab.runner import Runner

    cfg = {"guest_cpus": 2, "duration": 0, "interval_us": 500, "hist_us": 1000}
    bench = invm_bench.RoundRun(Runner(tmp_path / "logs"), cfg, tmp_path, 1, ["static"], (5000, 100000, 5000))
    bench._threads = {0: 101, 1: 102}
    restored: list[int] = []
    monkeypatch.setattr(os, "sched_setscheduler", lambda tid, policy, param: restored.append(tid) if policy == os.SCHED_OTHER else None)
    monkeypatch.setattr(invm_bench, "OVERDUE_GRACE_S", 0.05)
    monkeypatch.setattr(invm_bench, "kvm_exits", lambda pid: None)
    monkeypatch.setattr(bench, "vm_pid", lambda: None)
    monkeypatch.setattr(bench, "kvm_rows", lambda: [])
    monkeypatch.setattr(bench.runner, "start", lambda *a, **k: None)
    window = bench.windows["static"]
    window.start()
    window._overdue_watch.join(2)  # type: ignore[union-attr]
    assert restored == [101, 102] and window.withdrawn_at is not None
    window.done()
    livelock = window.livelock()
    assert livelock is not None and livelock["window_ended_after_s"] is not None
    # A window that ends in time is never withdrawn.
    on_time = invm_bench.RoundRun(Runner(tmp_path / "logs2"), cfg, tmp_path, 2, ["static"], (5000, 100000, 5000)).windows["static"]
    monkeypatch.setattr(on_time.bench, "vm_pid", lambda: None)
    monkeypatch.setattr(on_time.bench, "kvm_rows", lambda: [])
    monkeypatch.setattr(on_time.bench.runner, "start", lambda *a, **k: None)
    monkeypatch.setattr(invm_bench, "OVERDUE_GRACE_S", 0.3)
    on_time.start()
    on_time.done()
    on_time._overdue_watch.join(1)  # type: ignore[union-attr]
    assert on_time.withdrawn_at is None and on_time.livelock() is None


def test_the_mode_is_taken_down_when_its_window_ends(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    from lab.invm import bench as invm_bench
    from lab.invm import pvsched_host
    from lab.runner import Runner

    cfg = {"guest_cpus": 2, "duration": 0, "interval_us": 500, "hist_us": 1000}
    bench = invm_bench.RoundRun(Runner(tmp_path / "logs"), cfg, tmp_path, 1, ["static", "idle"], (5000, 100000, 5000))
    bench._threads = {0: 101, 1: 102}
    restored: list[int] = []
    monkeypatch.setattr(os, "sched_setscheduler", lambda tid, policy, param: restored.append(tid) if policy == os.SCHED_OTHER else None)
    monkeypatch.setattr(invm_bench, "kvm_exits", lambda pid: None)
    monkeypatch.setattr(pvsched_host, "set_cap", lambda *a: None)
    monkeypatch.setattr(pvsched_host, "set_kvm_param", lambda *a: None)
    monkeypatch.setattr(bench, "vm_pid", lambda: None)
    monkeypatch.setattr(bench, "kvm_rows", lambda: [])
    monkeypatch.setattr(bench.runner, "start", lambda *a, **k: None)
    bench.current = window = bench.windows["static"]
    window.start()
    bench.on_line("LAB-BENCH-DONE static")
    # Static's vCPU threads are back to SCHED_OTHER before the guest sends its data.
    assert restored == [101, 102] and bench.current is None and window.error == ""
    assert window._overdue_watch is not None and window._overdue_watch.finished.is_set()  # cancelled


def test_a_mode_that_livelocks_the_guest_before_its_window_opens_is_withdrawn(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Static with an smp guest stopped it during the settle, before START: the
    # watch must run from the moment the mode is in place.
    import os

    from lab.invm import bench as invm_bench
    from lab.invm import pvsched_host
    from lab.runner import Runner

    class Attached:
        output = ""

        def wait_for(self, *a: object, **k: object) -> bool:
            return True

    cfg = {"guest_cpus": 2, "duration": 0, "settle_s": 0, "interval_us": 500, "hist_us": 1000, "irq_latency": "irq",
           "boost_loader": "boost", "scx_loader": "scx"}  # fmt: skip
    bench = invm_bench.RoundRun(Runner(tmp_path / "logs"), cfg, tmp_path, 1, ["static"], (5000, 100000, 5000))
    bench._threads = {0: 101, 1: 102}
    restored: list[int] = []
    monkeypatch.setattr(os, "sched_setscheduler", lambda tid, policy, param: restored.append(tid) if policy == os.SCHED_OTHER else None)
    monkeypatch.setattr(invm_bench, "OVERDUE_GRACE_S", 0.05)
    monkeypatch.setattr(invm_bench, "contended_cpu", lambda: 0)
    monkeypatch.setattr(pvsched_host, "start_load", lambda *a: None)
    monkeypatch.setattr(pvsched_host, "set_cap", lambda *a: None)
    monkeypatch.setattr(pvsched_host, "set_kvm_param", lambda *a: None)
    monkeypatch.setattr(bench.runner, "start", lambda *a, **k: Attached())
    window = bench.windows["static"]
    window.prepare()
    window._overdue_watch.join(2)  # type: ignore[union-attr]
    assert restored == [101, 102] and window.withdrawn_at is not None
    livelock = window.livelock()
    assert livelock is not None and livelock["window_was_open"] is False and livelock["window_ended_after_s"] is None


def test_a_rounds_guest_is_bounded_by_its_silence_with_room_for_a_withdrawn_window(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Two livelocked windows made a round outlast a bound on its whole length
    # though the guest finished (run 20261203T173525Z-2be1): the bound is on silence.
    from lab import accel
    from lab.invm import bench as invm_bench
    from lab.runner import Runner

    seen: dict[str, object] = {}

    def boot(runner, cfg, mode, out, **kw):  # type: ignore[no-untyped-def]
        seen.update(kw, kvm_timeout=cfg["kvm_timeout"])
        return accel.Probe(mode, True, 1.0, ""), ""

    monkeypatch.setattr(invm_bench, "boot_guest", boot)
    monkeypatch.setattr(invm_bench, "contended_cpu", lambda: 0)
    cfg = {"guest_cpus": 2, "duration": 12, "settle_s": 5, "interval_us": 500, "hist_us": 1000, "kvm_timeout": 120}
    order = ["idle", "vanilla", "pvsched", "pvsched-nocap", "scx", "static"]
    invm_bench.RoundRun(Runner(tmp_path / "logs"), cfg, tmp_path, 1, order, (5000, 100000, 5000)).run()
    assert seen["until_silent"] is True
    # A withdrawn window is quiet for its settle, its length and the grace, then the guest goes on.
    assert seen["kvm_timeout"] >= 120 + 5 + 12 + invm_bench.OVERDUE_GRACE_S


def test_overhead_driver_args_are_checked_before_anything_runs() -> None:
    from lab.cli import parser

    assert parser().parse_args(["bench", "--overhead-driver-args", "preempt_marks=0"]).overhead_driver_args == "preempt_marks=0"
    assert parser().parse_args(["bench"]).overhead_driver_args is None
    # They travel on the guest's kernel command line: a space or a bare word would split or vanish there.
    for bad in ("preempt_marks=0 hostile=1", "preempt_marks", "x=1;reboot", ""):
        with pytest.raises(SystemExit):
            parser().parse_args(["bench", "--overhead-driver-args", bad])


def test_the_reproduce_command_leaves_out_options_given_nothing() -> None:
    from lab.cli import parser
    from lab.suites.bench import reproduce_command

    def command(*argv: str) -> str:
        a = parser().parse_args(["bench", *argv])
        return reproduce_command({"rounds": a.rounds, "modes": a.modes, "overhead_driver_args": a.overhead_driver_args or ""})

    assert command() == "nox -s bench -- --rounds 5"
    assert command("--overhead-driver-args", "preempt_marks=0") == "nox -s bench -- --rounds 5 --overhead-driver-args preempt_marks=0"
    # What it prints parses back to the same options.
    argv = command("--overhead-driver-args", "preempt_marks=0").split(" -- ", 1)[1].split()
    assert parser().parse_args(["bench", *argv]).overhead_driver_args == "preempt_marks=0"


def test_an_overhead_guest_cut_short_says_so_instead_of_too_few_pairs() -> None:
    raw = _raw({"vanilla": [2400.0, 2500.0, 2300.0, 2450.0, 2350.0]})
    # Run 20261204T061136Z-e950: 12 rounds planned, the guest's whole-run timeout ended it in round 7.
    raw["overhead"] = {"seconds": {"without": [5.0, 4.2, 5.0, 3.6, 4.3, 3.8, 5.1], "with": [3.6, 3.5, 3.9, 3.7, 3.7, 3.4]},
                       "rounds_planned": 12, "boot_reason": "timed out after 360 s"}  # fmt: skip
    table = markdown(summarize(raw), "x")
    assert "ended after 7 hackbench runs without the driver and 6 with it, of 12 rounds planned (timed out after 360 s)" in table
    assert "too few" not in table
    # Cut short between rounds: the pairs it has still give an interval, said to be short.
    raw["overhead"]["seconds"]["without"] = raw["overhead"]["seconds"]["without"][:6]  # type: ignore[index]
    assert "6 pairs in turns; the guest ended after them, of 12 rounds planned (timed out after 360 s)" in markdown(summarize(raw), "x")
