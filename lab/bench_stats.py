"""The benchmark's statistics: rounds in a rotated order, medians with
bootstrap intervals, paired comparisons, and what counts as resolved.

Each round measures every mode once, so comparisons resample whole rounds
(paired by round): drift that hits one round hits every mode in it.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

RESAMPLES = 4000
CONFIDENCE = 0.95
# Fewer rounds than this give no interval at all. With n pairs, all n fall
# on one side by chance alone 2 / 2**n of the time (1 in 4 at three pairs),
# and a percentile bootstrap of so few rounds still puts 1.0 outside: it
# cannot be wider than the data. Five is the bench's default round count.
MIN_ROUNDS = 5


def round_orders(modes: Sequence[str], rounds: int) -> list[list[str]]:
    """Every mode once per round, the order rotated each round (a Latin square
    when rounds == len(modes)): no mode always runs first, or after the same one."""
    n = len(modes)
    return [[modes[(i + r) % n] for i in range(n)] for r in range(rounds)]


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def to_dict(self) -> dict[str, float]:
        return {"value": round(self.value, 4), "low": round(self.low, 4), "high": round(self.high, 4)}


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def bootstrap(
    columns: dict[str, list[float]],
    statistic: Callable[[dict[str, list[float]]], float | None],
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> Interval | None:
    """`statistic` of the rounds, with a percentile bootstrap interval over
    rounds: every resample draws round indices with replacement and applies
    them to every column alike (paired). None with fewer than MIN_ROUNDS
    rounds or when the statistic is undefined on the data itself."""
    n = len(next(iter(columns.values()), []))
    if n < MIN_ROUNDS or any(len(c) != n for c in columns.values()):
        return None
    point = statistic(columns)
    if point is None:
        return None
    rng = random.Random(seed)
    values = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        v = statistic({k: [c[i] for i in idx] for k, c in columns.items()})
        if v is not None:
            values.append(v)
    if not values:
        return None
    values.sort()
    tail = (1 - CONFIDENCE) / 2
    return Interval(point, _percentile(values, tail), _percentile(values, 1 - tail))


def median_interval(values: list[float], seed: int = 0) -> Interval | None:
    return bootstrap({"x": values}, lambda c: statistics.median(c["x"]), seed)


def ratio_interval(numerator: list[float], denominator: list[float], seed: int = 0) -> Interval | None:
    """median(numerator) / median(denominator), paired by round."""

    def stat(c: dict[str, list[float]]) -> float | None:
        d = statistics.median(c["d"])
        return statistics.median(c["n"]) / d if d else None

    return bootstrap({"n": numerator, "d": denominator}, stat, seed)


def share_interval(vanilla: list[float], mode: list[float], reference: list[float], seed: int = 0) -> Interval | None:
    """(vanilla - mode) / (vanilla - reference) of the medians, paired by round:
    the share of the reference's gain over vanilla that `mode` achieves."""

    def stat(c: dict[str, list[float]]) -> float | None:
        v, m, r = (statistics.median(c[k]) for k in ("v", "m", "r"))
        return (v - m) / (v - r) if v > r else None

    return bootstrap({"v": vanilla, "m": mode, "r": reference}, stat, seed)


def rounds_to_clear(interval: Interval, bound: float, rounds: int) -> int | None:
    """About how many rounds an interval like this one would need to clear
    `bound`, if it narrows as 1/sqrt(rounds) and the value stays where it is;
    None when the value sits on the bound (no number of rounds would)."""
    distance = abs(bound - interval.value)
    if distance == 0:
        return None
    half = interval.high - interval.value if bound > interval.value else interval.value - interval.low
    return max(rounds, math.ceil(rounds * (half / distance) ** 2))


def resolved(interval: Interval | None, null: float) -> bool:
    """Whether the interval excludes `null` (1.0 for a ratio, 0 for a share)."""
    return interval is not None and not interval.contains(null)


def shown(interval: Interval | None, null: float, digits: int = 2) -> str:
    """A comparison for a table: the value with its interval, or why there is none."""
    if interval is None:
        return "n/a"
    text = f"{interval.value:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"
    return text if resolved(interval, null) else f"not resolved ({text})"
