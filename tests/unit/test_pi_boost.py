"""The PI-boost check's verdict, on synthetic samples (no VM)."""

from __future__ import annotations

import collections

from lab.invm import pi_boost

ROW = {"boosts": "4", "throttles": "3", "kept_rt": "0"}


def test_a_thread_that_stays_at_its_pi_priority_passes() -> None:
    status, why = pi_boost.judge(collections.Counter({pi_boost.PI_PRIORITY: 120}), ROW)
    assert status == "passed", why


def test_a_boost_or_restore_that_drops_the_pi_boost_fails() -> None:
    # FIFO 10's priority (the boost) and nice 0's (the restore): what sched_setattr without PI gives.
    samples = collections.Counter({pi_boost.PI_PRIORITY: 3, -11: 40, 20: 77})
    status, why = pi_boost.judge(samples, ROW)
    assert status == "failed" and "-11: 40" in why


def test_no_boost_cycles_is_no_evidence() -> None:
    samples = collections.Counter({pi_boost.PI_PRIORITY: 500})
    assert pi_boost.judge(samples, {**ROW, "throttles": "0"})[0] == "failed"
    assert pi_boost.judge(samples, {})[0] == "failed"


def test_too_few_samples_fail() -> None:
    assert pi_boost.judge(collections.Counter(), ROW)[0] == "failed"
    # A starved sampler that saw one moment of 7 cycles (seen: run 20261203T064304Z-4fde).
    assert pi_boost.judge(collections.Counter({pi_boost.PI_PRIORITY: 1}), ROW)[0] == "failed"


def test_the_watch_goes_on_until_both_the_cycles_and_the_samples_are_there() -> None:
    assert pi_boost.enough(collections.Counter({pi_boost.PI_PRIORITY: 120}), ROW)
    # KVM's cycles done after 10 samples: keep sampling (the thread stays PI-boosted meanwhile).
    assert not pi_boost.enough(collections.Counter({pi_boost.PI_PRIORITY: 10}), ROW)
    assert not pi_boost.enough(collections.Counter({pi_boost.PI_PRIORITY: 120}), {**ROW, "throttles": "2"})
    assert not pi_boost.enough(collections.Counter({pi_boost.PI_PRIORITY: 120}), {})
