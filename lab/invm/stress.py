"""The stress suite inside level 1: try to break pvsched, then check what is left.

Stdlib only, like the other in-VM runners.  Each part runs a number of
rounds (options of `lab stress`) and counts what went wrong; at the end the
host must hold no registered area (so no mapped guest page), no VM, no
boosted thread, and the kernel's per-vCPU counters must have agreed with
each other in every snapshot taken on the way.  Writes <out>/stress.json.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from lab.bench_stats import MIN_ROUNDS, Interval, ratio_interval, rounds_to_clear
from lab.exit_record import record_name
from lab.invm import boosted_teardown, marks, pvsched_host, vcpu_sampler, watchdog
from lab.invm.bench import parse_histfile
from lab.invm.host_load import cyclictest_command, every_cpu_command, ordinary_cyclictest_command
from lab.invm.level2 import Guest, arm_shutdown_trace, boot_guest, console_ref, guest_dmesg, sample_exits, shutdown_witness
from lab.protocol import LEVEL1_DONE, LEVEL1_READY, SHIPPED_CAP_US, STRESS_HOSTILE_ROUNDS, STRESS_PARTIAL_REPORT, parse_cap, stress_trouble
from lab.runner import Runner

KVM_VM_DEBUGFS = Path("/sys/kernel/debug/kvm")
HOST_HIST_US = 50000  # histogram range of the host cyclictest (us)
GUEST_LOAD_MARGIN_S = 40  # the hostile part's guest load outlasts the host's measurement by this
# A guest's report that it stalled, while the host waits for its load.
GUEST_STALL = re.compile(r"rcu: INFO: rcu_\w+ (self-)?detected stall")
STALL_POLL_S = 1.0
PARTIAL_REPORT = STRESS_PARTIAL_REPORT


@dataclass
class Part:
    name: str
    rounds: int = 0
    failures: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    lost: list[str] = field(default_factory=list)  # rounds whose guest reset or hung, measured again
    # Rounds that ended without a failure: what a part resumed in a later
    # level-1 boot keeps from a boot that was lost.
    clean_rounds: int = 0
    # The hostile part's clean rounds' measurements by round number, each
    # round's variants whole: what a later boot resumes from.
    round_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    started: float = 0.0  # time.monotonic() when the part began; 0 before
    # Level 1's taint flags when the part began: a part that starts after an
    # oops or a warning in level 1 runs on a kernel that may no longer be whole.
    tainted_at_start: int = 0

    def _mark_trouble(self) -> None:
        """Each failure and lost round in the kernel log, numbered: the host
        judges each by where it happened (a sign before a lost round says
        nothing of a criterion failed minutes later)."""
        marks.failed("stress", stress_trouble(self.name, len(self.failures) + len(self.lost) + 1))

    def fail(self, why: str) -> None:
        print(f"stress {self.name}: FAIL {why}", flush=True)
        self._mark_trouble()
        self.failures.append(why)

    def lose(self, why: str) -> None:
        """A round whose guest hung or reset: measured again so the part's
        figures are whole, but the part fails unless the host finds an
        emulator sign at or before this mark (lab.stress_resume.part_passed)."""
        print(f"stress {self.name}: lost round: {why}", flush=True)
        self._mark_trouble()
        self.lost.append(why)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _spread(values: list[float]) -> float:
    """(max - min) / mean: how far runs of the same thing differ."""
    return (max(values) - min(values)) / _mean(values) if len(values) > 1 else 0.0


def _within(interval: Interval | None) -> str:
    """` [low, high]`: a ratio's 95 % interval, for a verdict's message."""
    return f" [{interval.low:.2f}, {interval.high:.2f}]" if interval else ""


# Beyond this many rounds a hint to run more is no hint (hours of level 1).
PRACTICAL_HOSTILE_ROUNDS = 60


def _holds(interval: Interval, bound: float, rounds: int) -> str:
    """That the interval holds the bound, and what might resolve it: more
    rounds, if a practical number would."""
    needed = rounds_to_clear(interval, bound, rounds)
    if needed is None or needed > PRACTICAL_HOSTILE_ROUNDS:
        hint = f"no practical number of rounds would (over {PRACTICAL_HOSTILE_ROUNDS})"
    else:
        hint = f"about {needed} paired rounds might (--hostile-rounds {needed})"
    return f"the interval holds {bound}; at this spread {hint}"


def _against(interval: Interval | None, bound: float, rounds: int) -> str:
    """Why a ratio beyond its bound is not resolved: its interval holds the bound."""
    if interval and interval.contains(bound):
        return f"; not resolved: {_holds(interval, bound, rounds)}"
    return ""


def _unresolved(what: str, value: float, interval: Interval | None, bound: float, rounds: int) -> str:
    """A ratio within its bound on the medians that the noise cannot tell
    from the bound: not a pass, since nothing showed it within."""
    why = f"{rounds} paired rounds give no interval (at least {MIN_ROUNDS})" if interval is None else _holds(interval, bound, rounds)
    return f"{what} {value:.2f}x{_within(interval)} of vanilla: within {bound} on the medians, not resolved: {why}"


# The hostile part's criterion: the host keeps 90 % of its progress and its
# latency stays within 110 % of vanilla (medians over the rounds).
PROGRESS_BOUND = 0.9
LATENCY_BOUND = 1.1


def hostile_verdict(
    vanilla: list[dict[str, Any]],
    hostile: list[dict[str, Any]],
    policy: list[dict[str, Any]] | None = None,
    unboosted: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Medians over the rounds: host progress >= 0.9x, host latency <= 1.1x
    vanilla, each shown by its interval clearing the bound (not resolved: failed).

    Host latency is a SCHED_OTHER task's, as the host's ordinary tasks
    run: what the cap promises them. A host task at SCHED_FIFO below the
    boosts' priority waits out the rest of a boost's slice whenever it wakes
    under one, by design; its ratio is reported (`rt_latency_ratio`) and not
    judged: what protects a host RT task is a priority above
    `kvm.pvsched_max_rt_priority` (docs/pvsched.md).

    Medians, because one round in a few here takes a stall of the emulated
    machine (a 70 ms cyclictest maximum, its average up 30 %) that moves a
    mean of four by 10 %, the whole criterion; the ratios of the means are
    reported beside them. So is the vanilla rounds' own spread: on a noisy
    machine it says how much of a ratio is the machine, not the guest.
    `policy`: rounds with the policy loaded and a well-behaved guest; their
    ratios to vanilla split the cost into the policy's and the hostility's.
    `unboosted`: the hostile guest with no policy; hostile over unboosted is
    what the boosts cost apart from what the guest's own behaviour costs.
    """
    details: dict[str, Any] = {"vanilla": vanilla, "hostile": hostile}
    needed = ("bogo_ops", "ct_avg_us")
    complete = all(r.get(k) for r in vanilla + hostile for k in needed) and not any("error" in r for r in hostile)
    if not vanilla or not hostile or not complete:
        return details, [f"measurement missing: vanilla {vanilla}, hostile {hostile}"]
    van_ops, hos_ops = [r["bogo_ops"] for r in vanilla], [r["bogo_ops"] for r in hostile]
    van_ct, hos_ct = [r["ct_avg_us"] for r in vanilla], [r["ct_avg_us"] for r in hostile]
    progress, latency = median(hos_ops) / median(van_ops), median(hos_ct) / median(van_ct)
    van_p50, hos_p50 = [float(r.get("ct_p50_us") or 0) for r in vanilla], [float(r.get("ct_p50_us") or 0) for r in hostile]
    if all(van_p50) and all(hos_p50):
        details["host_p50_ratio"] = round(median(hos_p50) / median(van_p50), 3)
    details.update({
        "progress_ratio": round(progress, 3),
        "host_latency_ratio": round(latency, 3),
        "progress_ratio_of_means": round(_mean(hos_ops) / _mean(van_ops), 3),
        "host_latency_ratio_of_means": round(_mean(hos_ct) / _mean(van_ct), 3),
        "vanilla_spread": {"bogo_ops": round(_spread(van_ops), 3), "ct_avg_us": round(_spread(van_ct), 3)},
        "throttles": sum(r.get("throttles", 0) for r in hostile),
    })  # fmt: skip
    if policy and all(r.get(k) for r in policy for k in needed):
        details["policy"] = policy
        details["policy_progress_ratio"] = round(median([r["bogo_ops"] for r in policy]) / median(van_ops), 3)
        details["policy_latency_ratio"] = round(median([r["ct_avg_us"] for r in policy]) / median(van_ct), 3)
    if unboosted and len(unboosted) == len(hostile) and all(r.get(k) for r in unboosted for k in needed):
        unb_ops, unb_ct = [r["bogo_ops"] for r in unboosted], [r["ct_avg_us"] for r in unboosted]
        details["unboosted"] = unboosted
        details["unboosted_progress_ratio"] = round(median(unb_ops) / median(van_ops), 3)
        details["unboosted_latency_ratio"] = round(median(unb_ct) / median(van_ct), 3)
        details["boost_latency_ratio"] = round(median(hos_ct) / median(unb_ct), 3)
        if boost_iv := ratio_interval(hos_ct, unb_ct):
            details["boost_latency_interval"] = boost_iv.to_dict()
    # The verdict stays on the medians; the interval (rounds resampled in
    # their pairs) says whether this machine's noise could tell 10 % apart.
    progress_iv, latency_iv = ratio_interval(hos_ops, van_ops), ratio_interval(hos_ct, van_ct)
    for key, iv in (("progress_interval", progress_iv), ("host_latency_interval", latency_iv)):
        if iv:
            details[key] = iv.to_dict()
    if all(r.get("rt_ct_avg_us") for r in vanilla + hostile):
        van_rt, hos_rt = [float(r["rt_ct_avg_us"]) for r in vanilla], [float(r["rt_ct_avg_us"]) for r in hostile]
        details["rt_latency_ratio"] = round(median(hos_rt) / median(van_rt), 3)
        if rt_iv := ratio_interval(hos_rt, van_rt):
            details["rt_latency_interval"] = rt_iv.to_dict()
    failures = []
    if progress < PROGRESS_BOUND:
        failures.append(f"host stress-ng progress {progress:.2f}x{_within(progress_iv)} of vanilla (medians, < {PROGRESS_BOUND}; "
                        f"vanilla spread {_spread(van_ops):.0%}{_against(progress_iv, PROGRESS_BOUND, len(vanilla))})")  # fmt: skip
    if latency > LATENCY_BOUND:
        failures.append(f"host SCHED_OTHER cyclictest avg {latency:.2f}x{_within(latency_iv)} of vanilla (medians, > {LATENCY_BOUND}; "
                        f"vanilla spread {_spread(van_ct):.0%}{_against(latency_iv, LATENCY_BOUND, len(vanilla))})")  # fmt: skip
    if details["throttles"] == 0:
        failures.append("the hostile guest was never throttled")
    # A ratio within its bound passes only when its interval clears the
    # bound too: on a machine this noisy a coin toss lands on either side.
    for what, value, iv, bound, within in (
        ("host stress-ng progress", progress, progress_iv, PROGRESS_BOUND, progress >= PROGRESS_BOUND),
        ("host SCHED_OTHER cyclictest avg", latency, latency_iv, LATENCY_BOUND, latency <= LATENCY_BOUND),
    ):
        if within and (iv is None or iv.contains(bound)):
            failures.append(_unresolved(what, value, iv, bound, len(vanilla)))
    if unresolved := [f for f in failures if "not resolved" in f]:
        details["not_resolved"] = unresolved
    return details, failures


# Each variant's guest (lab.hostile) and whether the boost policy is attached,
# in the order a round measures them. "unboosted": the hostile guest with no
# policy, so the host's cost of the guest's own behaviour (its corrupting
# loop, its exits) is told apart from what the boosts cost.
HOSTILE_VARIANT_SETUP = {"vanilla": (0, False), "policy": (0, True), "unboosted": (1, False), "hostile": (1, True)}
HOSTILE_VARIANTS = tuple(HOSTILE_VARIANT_SETUP)


def hostile_schedule(rounds: int) -> list[tuple[int, str]]:
    """The order of the hostile part's measurements: (round, variant).

    Every other round runs its variants in reverse (vanilla, policy,
    hostile, then hostile, policy, vanilla), so that a steady drift of the
    machine over the part (seen here: bogo-ops falling 20 % over seven
    minutes) falls alike on every variant's mean instead of on the ones
    measured last.
    """
    variants = list(HOSTILE_VARIANTS)
    return [(i, name) for i in range(rounds) for name in (variants if i % 2 == 0 else variants[::-1])]


def hostile_runs(measured: dict[int, dict[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Each variant's measurements in round order, for hostile_verdict.
    Vanilla and hostile only from rounds that have both: their interval
    resamples them in pairs by position, so a round that lost one of them
    must not shift every later pair."""
    rounds = [measured[i] for i in sorted(measured)]
    paired = [r for r in rounds if "vanilla" in r and "hostile" in r]
    return {"vanilla": [r["vanilla"] for r in paired], "hostile": [r["hostile"] for r in paired],
            "policy": [r["policy"] for r in rounds if "policy" in r],
            "unboosted": [r["unboosted"] for r in paired if "unboosted" in r]}  # fmt: skip


# The host's latency tasks in the hostile part, by the prefix of their keys:
# "" a SCHED_OTHER task (the criterion: what the cap promises the host's
# ordinary tasks), "rt_" one at SCHED_FIFO 5, below the boosts' priority
# (reported: it waits out a boost's slice by design, docs/pvsched.md).
HOST_LATENCY_TASKS = {"": "other", "rt_": "fifo"}


def cyclictest_result(output: str, hist: Path, prefix: str = "") -> dict[str, float | None]:
    """avg, p50, p99 and max latency (us) of one cyclictest run, keys prefixed;
    None where it measured nothing."""
    avgs = [int(a) for a in re.findall(r"Avg:\s*(\d+)", output)]
    maxs = [int(a) for a in re.findall(r"Max:\s*(\d+)", output)]
    result: dict[str, float | None] = {
        "ct_avg_us": sum(avgs) / len(avgs) if avgs else None,
        "ct_max_us": max(maxs) if maxs else None,
    }
    if hist.exists():
        # Percentiles too: under TCG a few stalls of tens of ms move the average.
        summary = parse_histfile(hist.read_text())
        result["ct_p50_us"], result["ct_p99_us"] = summary["p50_us"], summary["p99_us"]
        result["ct_avg_us"] = result["ct_avg_us"] or summary["avg_us"] or None
        result["ct_max_us"] = result["ct_max_us"] or summary["max_us"] or None
    return {prefix + key: value for key, value in result.items()}


def part_record(part: Part) -> dict[str, Any]:
    return {
        "name": part.name,
        "rounds": part.rounds,
        "clean_rounds": part.clean_rounds,
        "round_results": part.round_results,
        "failures": part.failures,
        "lost": part.lost,
        # A part under way reports the time it has run so far.
        "seconds": part.seconds or (round(time.monotonic() - part.started, 1) if part.started else 0.0),
        "level1_tainted_at_start": part.tainted_at_start,
        "details": part.details,
    }


def kernel_taint(path: Path = Path("/proc/sys/kernel/tainted")) -> int:
    """The running kernel's taint flags (0: untainted; -1: unreadable)."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return -1


# Taint flags that say level 1 itself went wrong: a bad page, an oops, a
# warning, a soft lockup. Rounds run after one say nothing about our code.
TAINT_TROUBLE = {"B": 1 << 5, "D": 1 << 7, "W": 1 << 9, "L": 1 << 14}


def taint_trouble(before: int, after: int) -> str:
    """The trouble flags set in `after` and not in `before`, as letters ("" if none or unread)."""
    if before < 0 or after < 0:
        return ""
    return "".join(letter for letter, bit in TAINT_TROUBLE.items() if after & bit and not before & bit)


def counters_consistent(rows: list[dict[str, str]]) -> list[str]:
    """Every boost ends in an unboost, a throttle or its slice; a thread is RT only while boosted.

    boosts - unboosts - slice ends - (1 if boosted now) must lie in
    [0, throttles] (a throttle may also hit a vCPU that was not boosted).
    One count of slack: debugfs reads the counters without the vCPU's lock.
    """
    bad = []
    for r in rows:
        if "slice_ends" not in r:
            bad.append(f"tid {r['tid']}: no slice_ends count in KVM's row")
            continue
        boosts, unboosts, throttles = int(r["boosts"]), int(r["unboosts"]), int(r["throttles"])
        slices = int(r["slice_ends"])
        open_boost = 1 if r["state"] == "boosted" else 0
        excess = boosts - unboosts - slices - open_boost
        if not -1 <= excess <= throttles + 1:
            bad.append(f"tid {r['tid']}: boosts={boosts} unboosts={unboosts} slice_ends={slices} throttles={throttles} "
                       f"state={r['state']}")  # fmt: skip
        if r["state"] != "boosted" and int(r["policy"]) in (1, 2):  # SCHED_FIFO, SCHED_RR
            bad.append(f"tid {r['tid']}: state {r['state']} but policy {r['policy']} prio {r['rt_priority']}")
    return bad


def guest_ended(guest: Guest) -> bool:
    """Whether a background guest ended on its own (a triple-faulted one is
    paused for its page walk, then quit: lab.invm.reset_watch)."""
    return guest.proc.poll() is not None or guest.was_reset()


def guest_gone(guest: Guest, cfg: dict[str, Any]) -> str:
    """` (its QEMU's status; what KVM saw of it) (console PATH)` for a guest
    that ended on its own: the words the host reads emulator signs from
    (lab.emulator_faults), as the hostile part's lost rounds give them."""
    code = guest.proc.poll()
    status = f"its QEMU exited with status {code}" if code is not None else "its QEMU did not exit"
    return f" ({status}; {shutdown_witness(guest.trace, cfg)}{guest.reset_walk()}){console_ref(guest.log)}"


def unstarted(guest: Guest, cfg: dict[str, Any]) -> str:
    """What became of a guest that never reached its workload: gone (guest_gone) or silent."""
    return guest_gone(guest, cfg) if guest_ended(guest) else " (still silent)"


class Stress:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.out = Path(cfg["out"])
        self.runner = Runner(self.out / "logs-level1")
        self.parts: list[Part] = []
        self.snapshots = 0
        self.inconsistent: list[str] = []
        self.guest_dmesg: list[str] = []

    # -- helpers ----------------------------------------------------------------

    def snapshot(self) -> list[dict[str, str]]:
        try:
            rows = pvsched_host.read_kvm_vcpus()
        except pvsched_host.DebugfsUnreadable as exc:
            self.inconsistent.append(str(exc))  # no data: the counter check fails
            return []
        self.snapshots += 1
        self.inconsistent += counters_consistent(rows)
        return rows

    def policy(self, name: str) -> pvsched_host.PolicyRun:
        loader = self.cfg["pvsched"]["loader" if name == "boost" else "scx_loader"]
        return pvsched_host.PolicyRun(self.runner, loader, self.out / f"stress-{name}-stats.json")

    def vm_left(self) -> list[str] | None:
        """VMs in KVM's debugfs; None when it cannot be read (no data: the checks fail)."""
        try:
            return [p.name for p in KVM_VM_DEBUGFS.iterdir() if re.fullmatch(r"\d+-\d+", p.name)]
        except OSError:
            return None

    def registered(self) -> int | None:
        """Areas KVM lists; None when its debugfs cannot be read."""
        try:
            return len(pvsched_host.read_kvm_vcpus())
        except pvsched_host.DebugfsUnreadable:
            return None

    def settle(self, part: Part, what: str, timeout: float = 5.0) -> None:
        """After a guest is gone: no area registered, no VM left in KVM."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self.registered() != 0 or self.vm_left() != []):
            time.sleep(0.1)
        areas, vms = self.registered(), self.vm_left()
        if areas != 0:
            part.fail(f"{what}: {'KVM debugfs unreadable' if areas is None else f'{areas} vCPU areas still registered'}")
        if vms != []:
            part.fail(f"{what}: {'KVM VM debugfs unreadable' if vms is None else f'VMs left in KVM debugfs: {vms}'}")

    def boosted_tids(self, threads: dict[int, int]) -> list[int]:
        return [t for t in threads.values() if vcpu_sampler.thread_policy(t) == pvsched_host.SCHED_FIFO]

    def run_part(self, part: Part, body: Any) -> None:
        part.tainted_at_start = kernel_taint()
        taint = f" on a tainted level 1 (taint {part.tainted_at_start:#x})" if part.tainted_at_start > 0 else ""
        print(f"stress {part.name}: start{taint}", flush=True)
        part.started = time.monotonic()
        try:
            body(part)
        except Exception as exc:  # noqa: BLE001 - a broken part is a failure, the others still run
            part.fail(f"exception: {exc!r}")
        part.seconds = round(time.monotonic() - part.started, 1)
        print(f"stress {part.name}: {part.rounds} rounds, {len(part.failures)} failures, {part.seconds} s", flush=True)
        self.parts.append(part)

    def progress(self, current: Part | None = None) -> dict[str, Any]:
        """The parts done so far, the part under way if any, and the counter snapshots they took."""
        done: dict[str, Any] = {
            "parts": [part_record(p) for p in self.parts],
            "counter_snapshots": self.snapshots,
            "inconsistent_counters": self.inconsistent,
        }
        if current is not None:
            done["current"] = part_record(current)
        return done

    def save_progress(self, current: Part | None = None) -> None:
        """What is done survives a level 1 that dies later: the host reruns
        only what is missing from this (Pipeline._stress_attempts)."""
        (self.out / PARTIAL_REPORT).write_text(json.dumps(self.progress(current), indent=2) + "\n")

    def write_logs(self) -> None:
        (self.out / "level2-dmesg.txt").write_text("".join(self.guest_dmesg))
        (self.out / "level1-dmesg.txt").write_text(self.runner.run(["dmesg"], "dmesg", check=False).output)

    # -- parts -------------------------------------------------------------------

    def churn(self, part: Part) -> None:
        """Create and destroy the guest repeatedly with the policy loaded."""
        policy = self.policy("boost")
        if err := policy.start():
            part.fail(f"policy did not attach: {err}")
            return
        try:
            # A churn resumed in a new level-1 boot starts after the rounds kept from the lost one.
            for i in range(int(self.cfg.get("churn_from", 0)), int(self.cfg["churn"])):
                failures = len(part.failures)
                probe, console = boot_guest(self.runner, self.cfg, "kvm", self.out, label=f"stress-churn-{i}",
                                            extra_append="lab.mode=churn", walk_resets=True)  # fmt: skip
                self.guest_dmesg.append(guest_dmesg(console))
                m = re.search(r"LAB-STRESS registered=(\d+)", console)
                if not m:
                    # A guest that never reached its driver is a failed round, not the environment's:
                    # only the host may excuse it, with an emulator sign (lab.attempts).
                    part.fail(f"round {i}: no registration line; {probe.reason or 'the guest ended without it'}")
                elif int(m[1]) != int(self.cfg["guest_cpus"]) or not probe.ok:
                    part.fail(f"round {i}: registered {m[1]}; {probe.reason}")
                self.settle(part, f"round {i}")
                trouble = taint_trouble(part.tainted_at_start, kernel_taint())
                if trouble:  # the round is not kept: a new boot runs it again if the host excuses this one
                    part.fail(f"level 1 tainted ({trouble}) by round {i}: the part stops there")
                part.rounds += 1
                part.clean_rounds += len(part.failures) == failures
                self.save_progress(current=part)
                if trouble:
                    return
        finally:
            policy.stop()

    def hotplug(self, part: Part) -> None:
        """vCPU hotplug in the guest, repeatedly, while an RT task runs, policy loaded."""
        policy = self.policy("boost")
        if err := policy.start():
            part.fail(f"policy did not attach: {err}")
            return
        rounds = int(self.cfg["hotplug"])
        try:
            probe, console = boot_guest(self.runner, self.cfg, "kvm", self.out, label="stress-hotplug",
                                        extra_append=f"lab.mode=hotplug lab.rounds={rounds}",
                                        until_silent=True, walk_resets=True)  # fmt: skip
        finally:
            policy.stop()
        self.guest_dmesg.append(guest_dmesg(console))
        m = re.search(r"LAB-STRESS hotplug rounds=(\d+) failures=(\d+) registered=(\d+)", console)
        if not probe.ok or not m:
            part.fail(probe.reason or "no hotplug summary from the guest")
            return
        part.rounds = int(m[1])
        if int(m[2]):
            part.fail(f"{m[2]} failed offline/online steps or wrong registered counts in {m[1]} rounds")
        if "rmmod failed" in console:
            part.fail("the guest module did not unload after the hotplug rounds")
        self.settle(part, "after hotplug")

    def reload(self, part: Part) -> None:
        """Load/unload the boost and sched_ext policies repeatedly under load, a boosted guest running."""
        # The guest boots before the host load starts (a boot under TCG with
        # every level-1 CPU loaded can outlast the boot timeout), and a guest
        # that does not start (nested KVM on TCG loses about one boot in ten)
        # is replaced once; the rounds run under load.
        guest = self.soak_guest(part, "reload")
        if guest is None:
            return
        load = pvsched_host.start_load(self.runner, "--cpu", str(os.cpu_count() or 1))
        try:
            threads = pvsched_host.qmp_vcpu_threads(guest.qmp)
            for i in range(int(self.cfg["reloads"])):
                boost = self.policy("boost")
                if err := boost.start():
                    part.fail(f"round {i}: boost policy did not attach: {err[-200:]}")
                    continue
                time.sleep(0.5)
                self.snapshot()
                boost.stop()
                time.sleep(0.2)
                if left := self.boosted_tids(threads):
                    part.fail(f"round {i}: vCPU threads {left} still SCHED_FIFO after the boost policy left")
                scx = self.policy("scx")
                if err := scx.start():
                    part.fail(f"round {i}: scx policy did not attach: {err[-200:]}")
                    continue
                state = pvsched_host.scx_state()
                time.sleep(0.5)
                scx.stop()
                after = pvsched_host.await_scx_state(("disabled",), 10)
                if state != "enabled" or after != "disabled":
                    part.fail(f"round {i}: sched_ext state {state} while loaded, {after} after")
                if guest_ended(guest):
                    part.fail(f"round {i}: the guest died{guest_gone(guest, self.cfg)}")
                    break
                part.rounds += 1
        finally:
            load.stop(signal.SIGKILL)
            guest.end()
        self.guest_dmesg.append(guest.console)
        self.settle(part, "after the reload guest")

    def soak_guest(self, part: Part, label: str) -> Guest | None:
        """A running soak guest, or None (its lost boots listed in `part`)."""
        for attempt in (label, f"{label}-again"):
            guest = self.start_soak(f"stress-{attempt}")
            if guest.wait_for("LAB-STRESS soak running", float(self.cfg["kvm_timeout"])):
                return guest
            # Exit status 0 with an empty console: the guest reset in early boot (-no-reboot).
            lines = len(guest.console.splitlines())
            how = unstarted(guest, self.cfg)
            guest.end()
            self.guest_dmesg.append(guest.console)
            part.lose(f"the soak guest {attempt} did not start after {lines} console lines{how}")
        return None

    def start_soak(self, label: str) -> Guest:
        """A soak guest whose triple fault, if it has one, KVM traces and level 1 walks."""
        trace = arm_shutdown_trace(self.runner) if self.cfg.get("trace_shutdowns") else None
        return Guest(self.runner, self.cfg, self.out, label, "lab.mode=soak", reset_trace=trace)

    def teardown(self, part: Part) -> None:
        """Tiny VMs killed the moment KVM shows a vCPU boosted, or throttled
        (lab/invm/boosted_teardown.py), many rounds: timers and apply work in flight."""
        rounds = int(self.cfg["teardowns"])
        case = boosted_teardown.destroy_case(self.runner, self.cfg["pvsched"]["loader"], self.out, rounds=rounds)
        part.details["teardown"] = case.message
        if case.status == "passed":
            part.rounds = part.clean_rounds = rounds
        else:
            part.fail(case.message)
        self.snapshot()

    def kill(self, part: Part) -> None:
        """SIGKILL the VMM while a vCPU thread is boosted."""
        policy = self.policy("boost")
        if err := policy.start():
            part.fail(f"policy did not attach: {err}")
            return
        boosted_at_kill = 0
        try:
            for i in range(int(self.cfg["kills"])):
                guest = self.start_soak(f"stress-kill-{i}")
                try:
                    boosted = self.boosted_before_kill(part, i, guest)
                finally:
                    guest.end(signal.SIGKILL)
                self.guest_dmesg.append(guest.console)
                if boosted is None:
                    continue
                boosted_at_kill += boosted
                self.settle(part, f"round {i}")
                part.rounds += 1
        finally:
            policy.stop()
        part.details["boosted_at_kill"] = boosted_at_kill
        if boosted_at_kill == 0:
            part.fail("no round had a boosted vCPU thread when the VMM was killed")

    def boosted_before_kill(self, part: Part, i: int, guest: Guest) -> bool | None:
        """Whether a vCPU thread of the soak guest is boosted when its VMM is
        to be killed (waiting up to 20 s for one); None when there is no
        kill to make: the guest did not start, or died first."""
        if not guest.wait_for("LAB-STRESS soak running", float(self.cfg["kvm_timeout"])):
            part.lose(f"round {i}: the soak guest did not start{unstarted(guest, self.cfg)}")
            return None
        threads = pvsched_host.qmp_vcpu_threads(guest.qmp)
        deadline = time.monotonic() + 20
        while not (boosted := self.boosted_tids(threads)) and time.monotonic() < deadline and not guest_ended(guest):
            time.sleep(0.05)
        if guest_ended(guest):
            part.fail(f"round {i}: the guest died before its kill{guest_gone(guest, self.cfg)}")
            return None
        # The read that ended the wait, not a second one: at the shipped cap a
        # boost lasts a 1 ms slice, and a read a moment later missed every one
        # of stress run 20261206T183221Z-dae8's five rounds.
        self.snapshot()
        return bool(boosted)

    def hostile(self, part: Part) -> None:
        """A guest asking for boosts all the time must cost the host no more than the cap allows."""
        saved = pvsched_host.Cap.read()
        budget_us, period_us, vm_budget_us = saved.budget_us, saved.period_us, saved.vm_budget_us
        if self.cfg.get("hostile_cap"):
            budget_us, period_us, vm = parse_cap(str(self.cfg["hostile_cap"]))
            pvsched_host.set_cap(budget_us, period_us)
            if vm is not None:
                vm_budget_us = vm
                pvsched_host.set_kvm_param("pvsched_vm_budget_us", vm_budget_us)
        elif not saved.is_shipped():
            part.fail(f"KVM's cap is {budget_us}/{period_us} us (VM {vm_budget_us} us), not the shipped {SHIPPED_CAP_US}")
            return
        # Round number -> variant -> measurement. A part resumed in a new
        # level-1 boot starts with the clean rounds kept from a lost one and
        # measures the others (lab.stress_resume).
        measured: dict[int, dict[str, dict[str, Any]]] = {int(i): dict(r) for i, r in self.cfg.get("hostile_kept", {}).items()}
        kept = set(measured)
        troubled: set[int] = set()  # rounds with a lost measurement: never kept for a later boot
        try:
            # "policy": the policy loaded, the guest well-behaved (what the
            # policy costs by itself, apart from the hostility).
            for i, name in hostile_schedule(int(self.cfg.get("hostile_rounds", STRESS_HOSTILE_ROUNDS))):
                if i in kept:
                    continue
                hostile, boosted = HOSTILE_VARIANT_SETUP[name]
                policy = self.policy("boost") if boosted else None
                if policy and (err := policy.start()):
                    part.fail(f"policy did not attach: {err}")
                    return
                try:
                    result = self.measure_host(f"hostile-{name}-{i}", hostile)
                    if "error" in result:
                        # The guest reset or hung under nested KVM on TCG (its
                        # console just stops): that round measured nothing.
                        part.lose(f"{name} round {i}: {result['error']}; measured again")
                        troubled.add(i)
                        result = self.measure_host(f"hostile-{name}-{i}-again", hostile)
                    if "error" in result:
                        # Lost again: a host measured beside a guest that died
                        # in the window is not a round (stress run 8cbe kept one).
                        part.lose(f"{name} round {i}, measured again: {result['error']}; not kept")
                    else:
                        measured.setdefault(i, {})[name] = result
                finally:
                    if policy:
                        policy.stop()
                part.rounds += 1
                if trouble := taint_trouble(part.tainted_at_start, kernel_taint()):
                    # 13 minutes of rounds on a broken kernel would say nothing.
                    part.fail(f"level 1 tainted ({trouble}) by round {i} ({name}): the part stops there")
                    return
                if i not in troubled and len(measured.get(i, {})) == len(HOSTILE_VARIANTS):
                    part.round_results[str(i)] = measured[i]
                    part.clean_rounds += len(HOSTILE_VARIANTS)
                    self.save_progress(current=part)
        finally:
            saved.apply()
        runs = hostile_runs(measured)
        details, failures = hostile_verdict(runs["vanilla"], runs["hostile"], runs["policy"], runs["unboosted"])
        part.details.update(details)
        part.details["cap"] = f"{budget_us} us per {period_us} us, the VM's {vm_budget_us} us"
        for why in failures:
            part.fail(why)

    def measure_host(self, label: str, hostile: int) -> dict[str, Any]:
        secs = int(self.cfg["hostile_secs"])
        # The guest's load outlasts the host's measurement by a margin: its
        # KVM counters vanish with the VM, and a guest that finished first
        # left an empty after-snapshot (0 throttles in all 4 rounds of a run).
        # The guest is ended as soon as the host has measured, so the margin
        # costs nothing and the time goes to more rounds instead.
        # A guest lost on the way says what KVM saw of it, as boot_guest's do.
        trace = arm_shutdown_trace(self.runner) if self.cfg.get("trace_shutdowns") else None
        guest = Guest(self.runner, self.cfg, self.out, f"stress-{label}",
                      f"lab.mode=load lab.hostile={hostile} lab.secs={secs + GUEST_LOAD_MARGIN_S}", reset_trace=trace)  # fmt: skip
        result: dict[str, Any] = {}
        try:
            if not await_load(guest, float(self.cfg["kvm_timeout"])):
                if guest.proc.poll() is not None:
                    witness = f"QEMU exit {guest.proc.poll()}; {shutdown_witness(trace, self.cfg)}{guest.reset_walk()}"
                    return {"error": f"guest ended before its load ({witness}){console_ref(guest.log)}"}
                record = self.out / record_name(f"stress-{label}")
                seen = sample_exits(self.runner, guest.proc.pid, self.cfg, record)
                stalled = " (it reported a stall)" if GUEST_STALL.search(guest.console) else ""
                return {"error": f"guest did not start its load{stalled}" + (f"; {seen}" if seen else "")}
            time.sleep(1)
            before = {r["tid"]: r for r in self.snapshot()}
            sng = self.runner.start(every_cpu_command(secs, "--metrics-brief"), f"host load {label}", cwd=Path("/tmp"))
            latency = self.host_latency(label, secs)
            after = self.snapshot()
            if sng.wait(60) is None:
                sng.stop(signal.SIGKILL)
            sng_out = sng.output
            # A guest that reset itself is paused for its page walk until it is
            # quit (lab.invm.reset_watch): KVM may list it in a snapshot after it.
            if not after or guest.was_reset():
                exited = guest.proc.poll()
                witness = f"{shutdown_witness(trace, self.cfg)}{guest.reset_walk()}"
                gone = f", its QEMU exited with status {exited}; {witness}" if exited is not None else ""
                what = "no KVM snapshot after the measurement" if not after else "the guest reset itself during the measurement"
                result["error"] = f"{what} (the guest was gone{gone}){console_ref(guest.log)}"
            (self.out / f"stress-{label}-host.txt").write_text(sng_out + "\n" + "\n".join(out for out, _ in latency.values()))
            m = re.search(r"\bcpu\s+(\d+)\s", sng_out)
            result["bogo_ops"] = int(m[1]) if m else None
            for prefix, (output, hist) in latency.items():
                result.update(cyclictest_result(output, hist, prefix))
            result["throttles"] = sum(int(r["throttles"]) - int(before.get(r["tid"], {}).get("throttles", 0)) for r in after)
            result["boosted_ms"] = round(
                sum(int(r["boosted_ns"]) - int(before.get(r["tid"], {}).get("boosted_ns", 0)) for r in after) / 1e6, 1
            )
        finally:
            guest.end()
        self.guest_dmesg.append(guest_dmesg(guest.console))
        print(f"stress {label}: {result}", flush=True)
        return result

    def host_latency(self, label: str, secs: int) -> dict[str, tuple[str, Path]]:
        """Both host latency tasks over the same `secs`: key prefix -> (cyclictest's output, its histogram)."""
        hist = {prefix: self.out / f"stress-{label}-host-{name}.hist" for prefix, name in HOST_LATENCY_TASKS.items()}
        args = ("-D", str(secs), "-h", str(HOST_HIST_US))
        ordinary = self.runner.start(ordinary_cyclictest_command(*args, f"--histfile={hist['']}"),
                                     f"host cyclictest SCHED_OTHER {label}")  # fmt: skip
        try:
            rt = self.runner.run(cyclictest_command(*args, f"--histfile={hist['rt_']}"),
                                 f"host cyclictest FIFO {label}", timeout=secs + 60, check=False)  # fmt: skip
        finally:
            if ordinary.wait(60) is None:
                ordinary.stop(signal.SIGKILL)
        return {"": (ordinary.output, hist[""]), "rt_": (rt.output, hist["rt_"])}

    # -- end state -----------------------------------------------------------------

    def end_state(self) -> dict[str, Any]:
        qemu_pids = []
        for comm in Path("/proc").glob("[0-9]*/comm"):
            try:
                if comm.read_text().startswith("qemu"):
                    qemu_pids.append(comm.parent.name)
            except OSError:
                continue
        return {
            "registered_areas": self.registered(),
            "vms_left": self.vm_left(),
            "qemu_processes_left": qemu_pids,
            "scx_state": pvsched_host.scx_state(),
            "counter_snapshots": self.snapshots,
            "inconsistent_counters": self.inconsistent,
        }


def await_load(guest: Guest, timeout: float) -> bool:
    """Whether the guest starts its load within `timeout` s. False as soon
    as it ends or its console reports a stall: what KVM sees of it is then
    sampled while level 1 may still be whole (stress run 254a: a guest
    stalled from its boot, and level 1 panicked 11 s later, before the
    guest's timeout and its sample)."""
    deadline = time.monotonic() + timeout
    while True:
        if guest.wait_for("LAB-STRESS load start", min(STALL_POLL_S, max(deadline - time.monotonic(), 0))):
            return True
        if guest.proc.poll() is not None or GUEST_STALL.search(guest.console) or time.monotonic() >= deadline:
            return False


def run_parts(stress: Any, names: list[str], taint: Callable[[], int] = kernel_taint) -> None:
    """Run the parts in order. Once level 1 oopses, warns, soft-locks up or
    finds a bad page, this boot stops: the part it happened in and every part
    after it fail here, and the host reruns them in a new boot only if an
    emulator sign excuses it (lab.suites.stress), else the run fails."""
    suite_start = taint()
    for i, name in enumerate(names):
        part = Part(name)
        stress.run_part(part, getattr(stress, name))
        stress.write_logs()
        trouble = taint_trouble(suite_start, taint())
        if trouble:
            part.fail(f"level 1 tainted ({trouble}) during this part: what it measured after that is not evidence")
            for rest in names[i + 1 :]:
                skipped = Part(rest)
                skipped.fail(f"not run: level 1 tainted ({trouble}) during {name}; this boot stopped there")
                stress.parts.append(skipped)
            stress.save_progress()
            return
        stress.save_progress()


def main(config_path: str) -> int:
    cfg: dict[str, Any] = json.loads(Path(config_path).read_text())
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    print(f"{LEVEL1_READY} {Path('/proc/uptime').read_text().split()[0]}", flush=True)
    pvsched_host.observe_above_boosts()
    stress = Stress(cfg)
    watchdog.start(float(cfg.get("watchdog_s", 600)))  # where it is, if it hangs
    run_parts(stress, cfg["parts"])
    end = stress.end_state()
    stress.write_logs()
    report = {**stress.progress(), "end_state": end}
    (out / "stress.json").write_text(json.dumps(report, indent=2) + "\n")
    print(LEVEL1_DONE, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
