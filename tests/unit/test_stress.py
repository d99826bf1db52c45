"""The stress suite's end-state logic and report, without a VM."""

from __future__ import annotations

from lab.invm.stress import counters_consistent
from lab.pipeline import stress_markdown


def row(state: str = "none", policy: int = 0, boosts: int = 0, unboosts: int = 0, throttles: int = 0) -> dict[str, str]:
    return {"tid": "42", "state": state, "policy": str(policy), "rt_priority": "10" if policy else "0",
            "boosts": str(boosts), "unboosts": str(unboosts), "throttles": str(throttles)}  # fmt: skip


def test_balanced_counters_are_consistent() -> None:
    assert counters_consistent([row(boosts=5, unboosts=5)]) == []
    assert counters_consistent([row("boosted", 1, boosts=6, unboosts=5)]) == []
    # two boosts ended by the cap instead of an unboost
    assert counters_consistent([row("throttled", 0, boosts=7, unboosts=5, throttles=2)]) == []


def test_lost_or_invented_boosts_are_reported() -> None:
    assert counters_consistent([row(boosts=9, unboosts=5, throttles=1)])  # 3 boosts never ended
    assert counters_consistent([row(boosts=2, unboosts=6)])  # more unboosts than boosts


def test_rt_thread_that_is_not_boosted_is_reported() -> None:
    bad = counters_consistent([row("none", 1, boosts=3, unboosts=3)])
    assert bad and "policy 1" in bad[0]
    assert counters_consistent([row("throttled", 2, boosts=3, unboosts=2, throttles=1)])


def test_stress_markdown_lists_parts_and_end_state() -> None:
    report = {
        "parts": [
            {"name": "churn", "rounds": 10, "failures": [], "seconds": 200.0, "details": {}},
            {"name": "hostile", "rounds": 2, "failures": ["x"], "seconds": 90.0,
             "details": {"progress_ratio": 0.97, "vanilla": {"bogo_ops": 100}}},
        ],
        "end_state": {"registered_areas": 0, "vms_left": [], "inconsistent_counters": []},
    }  # fmt: skip
    md = stress_markdown(report)
    assert "| churn | 10 | 0 | 0 | 200.0 |" in md
    assert "progress_ratio=0.97" in md and "hostile vanilla: bogo_ops=100" in md
    assert "registered_areas=0" in md


def _run(ops: int, ct: float, throttles: int = 0) -> dict[str, float]:
    return {"bogo_ops": ops, "ct_avg_us": ct, "throttles": throttles}


def test_hostile_verdict_uses_means_over_rounds() -> None:
    from lab.invm.stress import hostile_verdict

    details, failures = hostile_verdict([_run(1000, 700), _run(800, 740)], [_run(880, 760, 9), _run(860, 730, 8)])
    assert failures == []
    assert details["progress_ratio"] == 0.967 and details["host_latency_ratio"] == 1.035
    assert details["vanilla_spread"] == {"bogo_ops": 0.222, "ct_avg_us": 0.056} and details["throttles"] == 17


def test_hostile_verdict_fails_slow_host_unthrottled_guest_and_missing_data() -> None:
    from lab.invm.stress import hostile_verdict

    _, failures = hostile_verdict([_run(1000, 700)], [_run(700, 900)])
    assert len(failures) == 3 and "0.70x" in failures[0] and "1.29x" in failures[1] and "never throttled" in failures[2]
    _, failures = hostile_verdict([_run(1000, 700)], [{"error": "guest did not start its load"}])
    assert failures and failures[0].startswith("measurement missing")
    gone = {**_run(900, 700), "error": "no KVM snapshot after the measurement (the guest was gone)"}
    _, failures = hostile_verdict([_run(1000, 700)], [gone])  # unknown throttles are not "never throttled"
    assert len(failures) == 1 and failures[0].startswith("measurement missing")


def test_hostile_verdict_reports_what_the_policy_alone_costs() -> None:
    from lab.invm.stress import hostile_verdict

    details, failures = hostile_verdict([_run(1000, 700)], [_run(950, 740, 5)], [_run(900, 770)])
    assert failures == []  # the gate is hostile vs vanilla; the policy rounds explain it
    assert details["policy_progress_ratio"] == 0.9 and details["policy_latency_ratio"] == 1.1
    details, _ = hostile_verdict([_run(1000, 700)], [_run(950, 740, 5)], [{"error": "guest did not start its load"}])
    assert "policy_latency_ratio" not in details


def test_hostile_verdict_reports_the_median_ratio_when_measured() -> None:
    from lab.invm.stress import hostile_verdict

    van = [{**_run(1000, 700), "ct_p50_us": 400}, {**_run(1000, 760), "ct_p50_us": 420}]
    hos = [{**_run(990, 730, 4), "ct_p50_us": 430}, {**_run(980, 750, 6), "ct_p50_us": 430}]
    details, _ = hostile_verdict(van, hos)
    assert details["host_p50_ratio"] == 1.049
    details, _ = hostile_verdict([_run(1000, 700)], [_run(990, 730, 4)])
    assert "host_p50_ratio" not in details  # no histogram, no median
