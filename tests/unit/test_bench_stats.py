"""The benchmark's statistics on data whose answer is known."""

from __future__ import annotations

import statistics

from lab import bench_stats as bs


def test_rounds_rotate_the_order_as_a_latin_square() -> None:
    modes = ["idle", "vanilla", "pvsched", "static"]
    orders = bs.round_orders(modes, 4)
    assert orders[0] == modes and orders[1] == ["vanilla", "pvsched", "static", "idle"]
    for position in range(4):  # every mode once in every position
        assert sorted(order[position] for order in orders) == sorted(modes)
    for order in orders:
        assert sorted(order) == sorted(modes)


def test_bootstrap_interval_of_a_median_holds_the_median_and_narrows_with_agreeing_rounds() -> None:
    spread = bs.median_interval([100.0, 140.0, 90.0, 160.0, 120.0])
    tight = bs.median_interval([119.0, 121.0, 120.0, 120.5, 119.5])
    assert spread is not None and tight is not None
    assert spread.value == 120.0 and spread.low <= 120.0 <= spread.high
    assert spread.low >= 90.0 and spread.high <= 160.0  # a median's resamples stay within the data
    assert tight.high - tight.low < (spread.high - spread.low) / 5
    assert bs.median_interval([]) is None
    assert bs.median_interval([120.0, 130.0]) is None  # two rounds: no interval, not a zero-width one


def test_three_pairs_that_agree_by_chance_are_not_resolved() -> None:
    # The bench's driver overhead as it was (run 20261203T200624Z-a4a3):
    # three pairs, each slower "with"; all three on one side happens by
    # chance alone one time in four, yet the bootstrap put 1.0 outside.
    without, with_ = [3.612, 4.16, 3.286], [4.024, 4.354, 3.748]
    assert bs.ratio_interval(with_, without) is None
    assert bs.shown(bs.ratio_interval(with_, without), 1.0) == "n/a"
    five = bs.ratio_interval([*with_, 4.1, 3.9], [*without, 3.7, 3.5])
    assert five is not None and bs.resolved(five, 1.0)


def test_a_constant_effect_is_resolved_and_noise_is_not() -> None:
    vanilla = [1000.0, 1400.0, 800.0, 1200.0, 1100.0]
    halved = [v / 2 for v in vanilla]  # the same rounds, half the latency
    ratio = bs.ratio_interval(vanilla, halved)
    assert ratio is not None and abs(ratio.value - 2.0) < 1e-9 and bs.resolved(ratio, 1.0)
    noise = [1100.0, 900.0, 1300.0, 1000.0, 1150.0]  # no effect: the interval straddles 1
    flat = bs.ratio_interval(vanilla, noise)
    assert flat is not None and not bs.resolved(flat, 1.0)
    assert bs.shown(flat, 1.0).startswith("not resolved (")
    assert bs.shown(ratio, 1.0).startswith("2.00 [")


def test_pairing_by_round_removes_drift_shared_by_every_mode() -> None:
    drift = [1.0, 3.0, 0.5, 2.0, 4.0]  # each round's load level, hitting both modes
    vanilla = [1000.0 * d for d in drift]
    mode = [900.0 * d for d in drift]
    paired = bs.ratio_interval(vanilla, mode)
    assert paired is not None and bs.resolved(paired, 1.0)
    assert abs(paired.value - 1000 / 900) < 1e-9


def test_share_of_a_reference_gain() -> None:
    vanilla = [1000.0, 1100.0, 900.0, 1050.0, 950.0]
    static = [100.0, 110.0, 90.0, 105.0, 95.0]
    half_way = [(v + s) / 2 for v, s in zip(vanilla, static, strict=True)]
    share = bs.share_interval(vanilla, half_way, static)
    assert share is not None and abs(share.value - 0.5) < 1e-9 and bs.resolved(share, 0.0)
    assert bs.share_interval(vanilla, vanilla, static) is not None
    assert not bs.resolved(bs.share_interval(vanilla, vanilla, static), 0.0)
    # A reference no better than vanilla: the share is undefined.
    assert bs.share_interval(vanilla, half_way, vanilla) is None
    assert statistics.median(half_way) < statistics.median(vanilla)


def test_the_interval_is_reproducible() -> None:
    data = [3.0, 5.0, 4.0, 8.0, 1.0]
    assert bs.median_interval(data) == bs.median_interval(data)


def test_rounds_to_clear_scales_the_interval_as_one_over_the_root_of_the_rounds() -> None:
    from lab.bench_stats import Interval, rounds_to_clear

    # Run fced's latency, 1.00x [0.74, 1.20] over 7 rounds against 1.1: the
    # upper side (0.20) must shrink to the distance (0.10), four times the rounds.
    assert rounds_to_clear(Interval(1.0, 0.74, 1.2), 1.1, 7) == 28
    # A bound below the value looks at the lower side: progress 0.84x [0.75, 0.97] against 0.9.
    assert rounds_to_clear(Interval(0.84, 0.75, 0.97), 0.9, 5) == 24
    # On the bound no number of rounds clears it; never fewer than already run.
    assert rounds_to_clear(Interval(1.1, 1.0, 1.2), 1.1, 7) is None
    assert rounds_to_clear(Interval(1.0, 0.99, 1.01), 1.1, 7) == 7
