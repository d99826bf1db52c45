"""Level 1's judging of the functional run's pvsched checks: what
`PvschedObserver` (lab/invm/pvsched_host.py) saw becomes one Case per check
(the table of checks: docs/pvsched.md). Observation there, verdicts here;
stdlib only, like the rest of lab/invm."""

from __future__ import annotations

from dataclasses import dataclass

from lab.invm.pvsched_host import (
    ADMIN_FLIP_MIN_DECISIONS,
    ADMIN_FLIP_MIN_FLIPS,
    ADMIN_NICE,
    ADMIN_RT_PRIORITY,
    BOOST_PRIORITY,
    CAP_PHASES,
    CS_PROBE_EXITS,
    CS_PROBE_KINDS,
    CS_PROBE_SECTIONS,
    DETACH_WAIT_S,
    DODGE_MAX_FIFO_SHARE,
    DODGE_MIN_SAMPLES,
    EVENT_STATS,
    GUEST_RT_PRIORITY,
    HINT_PRIORITY,
    HOOKS,
    HOST_WRITES_MAX_SHARE,
    LONGEST_BOOST_MAX_BUDGET_SHARE,
    PREEMPT_MAX_SHARE_IN_USER,
    PREEMPT_MIN_EVENTS,
    SCHED_FIFO,
    SCHED_OTHER,
    UNBOOST_MIN_SAMPLES,
    UNBOOST_SETTLE_S,
    UNBOOST_WINDOW_S,
    Cap,
    DebugfsUnreadable,
    PvschedObserver,
    Rows,
    read_kvm_vcpus,
)
from lab.ktap import Case

# The phase snapshots taken while the admin's own SCHED_FIFO is on vCPU 1's
# thread (set at admin-fifo, reset at admin-done; set at admin-hold, reset at
# admin-release; the flipper runs until admin-flip-done): RT there is the
# admin's, not a boost's.
ADMIN_RT_SNAPSHOTS = ("admin-done", "admin-release", "admin-flip-done")
RT_POLICIES = ("1", "2")  # SCHED_FIFO, SCHED_RR
# Fewer phase snapshots than this judge too little of the run.
RT_ONLY_MIN_SNAPSHOTS = 10

# vCPU 1's registrations in the guest's hotplug phase (lab/invm/guest_init.sh):
# online after offline, none at the online after the abandoned area's INIT, the last online.
HOTPLUG_REGISTRATIONS = 2


@dataclass(frozen=True)
class _Spin:
    """vCPU 1's KVM rows at the start and end of an RT spin, its times, and the cap read for its phase."""

    before: dict[str, str]
    after: dict[str, str]
    start: float
    end: float
    cap: Cap | None
    cap_at: float | None

    def grew(self, key: str) -> int:
        return int(self.after[key]) - int(self.before[key])


def judge(observer: PvschedObserver) -> list[Case]:
    """Every level-1 pvsched check of the functional run, from what `observer` saw."""
    return PvschedVerdicts(observer).cases()


class PvschedVerdicts:
    def __init__(self, obs: PvschedObserver) -> None:
        self.obs = obs

    def _admin_cases(self) -> list[Case]:
        """What the admin set on a registered vCPU thread stands (docs/pvsched.md, restore semantics)."""
        rows = {p: {int(r["tid"]): r for r in self.obs.snapshots.get(p, [])} for p in ("admin-nice", "admin-fifo", "admin-done")}
        tid = self.obs.threads.get(1)
        errors = [e for e in self.obs.errors if "admin" in e]

        def grew(key: str, start: str, end: str) -> int | None:
            a, b = rows[start].get(tid or -1), rows[end].get(tid or -1)
            return None if a is None or b is None or key not in a else int(b[key]) - int(a[key])

        boosted = grew("boosts", "admin-nice", "admin-fifo")
        nice = self.obs.admin.get("nice_after_boost")
        ok = not errors and self.obs.admin.get("nice_set") == ADMIN_NICE and bool(boosted) and nice == ADMIN_NICE
        nice_case = Case("pvsched_restore_keeps_admin_nice", "level1", "passed" if ok else "failed",
                         f"nice {self.obs.admin.get('nice_set')} set, {boosted} boosts, then nice {nice} "
                         f"(policy {self.obs.admin.get('policy_after_boost')}) {'; '.join(errors)}".strip())  # fmt: skip
        # Samples from after the admin's change (the boost of the previous RT task may last until then).
        set_at = self.obs.admin.get("fifo_set_at")
        fifo = [s for s in self.obs.samples if s.phase == "admin-fifo" and s.policies.get(tid or -1) is not None
                and isinstance(set_at, float) and s.t > set_at]  # fmt: skip
        lowered = [(s.policies.get(tid or -1), s.priorities.get(tid or -1)) for s in fifo
                   if (s.policies.get(tid or -1), s.priorities.get(tid or -1)) != (SCHED_FIFO, ADMIN_RT_PRIORITY)]  # fmt: skip
        kept = grew("kept_rt", "admin-fifo", "admin-done")
        end = self.obs.admin.get("fifo_after_boost")
        ok = not errors and len(fifo) >= 3 and not lowered and end == (SCHED_FIFO, ADMIN_RT_PRIORITY) and bool(kept)
        fifo_case = Case("pvsched_boost_never_lowers_rt_thread", "level1", "passed" if ok else "failed",
                         f"{len(fifo)} samples at FIFO {ADMIN_RT_PRIORITY} set by the admin, other: {lowered[:5]}; "
                         f"boosts KVM kept from it: {kept}; at the end {end}")  # fmt: skip
        return [nice_case, fifo_case]

    def _rt_only_while_boosted_case(self) -> Case:
        """At every phase snapshot no vCPU thread is SCHED_FIFO or SCHED_RR while
        KVM does not have it boosted (the admin's own RT aside): an RT thread
        KVM thinks unboosted is outside the cap for good. Judged when it holds
        in two snapshots in a row (debugfs reads state and policy apart, so a
        boost in flight may show once)."""
        name = "pvsched_vcpu_rt_only_while_boosted"
        keys = ("tid", "state", "policy", "rt_priority")
        order = sorted((t, p) for p, t in self.obs.phase_times.items() if p in self.obs.snapshots and p not in ADMIN_RT_SNAPSHOTS)
        judged = [(p, rows) for _, p in order if (rows := self.obs.snapshots[p]) and all(k in r for r in rows for k in keys)]
        stuck: list[str] = []
        before: dict[str, str] = {}
        for phase, rows in judged:
            now = {r["tid"]: f"{r['state']}, policy {r['policy']}/{r['rt_priority']}" for r in rows
                   if r["state"] != "boosted" and r["policy"] in RT_POLICIES}  # fmt: skip
            stuck += [f"tid {t} at {phase} ({how}; also the snapshot before)" for t, how in now.items() if t in before]
            before = now
        ok = len(judged) >= RT_ONLY_MIN_SNAPSHOTS and not stuck
        return Case(name, "level1", "passed" if ok else "failed",
                    f"{len(judged)} phase snapshots of KVM's vCPUs judged (at least {RT_ONLY_MIN_SNAPSHOTS}); "
                    f"RT while not boosted: {stuck[:3] or 'none'}")  # fmt: skip

    def _resumes_after_admin_case(self) -> Case:
        """KVM kept the boost the guest's RT task asked for while the admin had
        vCPU 1's thread at SCHED_FIFO 60, and boosted the thread by itself once
        the admin put it back to SCHED_OTHER, while that task's request stood
        (admin-release to admin-resumed, the task running all along): the
        request never changed, so nothing else would have asked. Boosts after
        the task ended are the next requests' and are not counted."""
        name = "pvsched_boost_resumes_after_admin_rt"
        phases = ("admin-hold", "admin-release", "admin-resumed")
        tid = str(self.obs.threads.get(1, -1))
        rows = [{r["tid"]: r for r in self.obs.snapshots.get(p, [])}.get(tid) for p in phases]
        keys = ("boosts", "kept_rt")
        if any(r is None or any(k not in r for k in keys) for r in rows):
            return Case(name, "level1", "failed", f"no KVM row of vCPU 1 (tid {tid}) with {keys} at each of {phases}")
        hold, release, resumed_at = ({k: int(r[k]) for k in keys} for r in rows if r is not None)
        kept = release["kept_rt"] - hold["kept_rt"]
        resumed = resumed_at["boosts"] - release["boosts"]
        held = self.obs.admin.get("held_at_release")
        wanted = (self.obs.admin.get("wanted_at_release"), self.obs.admin.get("wanted_at_resumed"))
        errors = [e for e in self.obs.errors if "admin-hold" in e or "admin-release" in e or "admin-resumed" in e]
        ok = (not errors and kept > 0 and held == (SCHED_FIFO, ADMIN_RT_PRIORITY) and wanted == (BOOST_PRIORITY, BOOST_PRIORITY)
              and resumed > 0)  # fmt: skip
        return Case(name, "level1", "passed" if ok else "failed",
                    f"while the admin's FIFO {ADMIN_RT_PRIORITY} held: {kept} boosts kept, "
                    f"{release['boosts'] - hold['boosts']} applied, the thread at {held} when released; "
                    f"the policy asking for FIFO {wanted[0]} at the release and {wanted[1]} 0.5 s later "
                    f"(want {BOOST_PRIORITY}, the RT task's, at both); between them: {resumed} boosts "
                    f"{'; '.join(errors)}".strip())  # fmt: skip

    def _promoted_case(self, name: str, phase: str, seen: dict[str, int] | None, by: str) -> Case:
        """A guest task spinning on vCPU 1 without sleeping (so no switch
        publishes it) that became SCHED_FIFO 50 while it ran is seen by the
        host 0.3 s after the change: the policy's last read of vCPU 1 has it.
        Its request is not judged: a throttle left by the phase before refuses
        it (CI run 20261206T164548Z-bdbe: (1, 50) read, request 0 while throttled)."""
        got = None if seen is None else (seen.get("last_policy"), seen.get("last_rt_priority"))
        want = (SCHED_FIFO, GUEST_RT_PRIORITY)
        errors = [e for e in self.obs.errors if phase in e]
        return Case(name, "level1", "passed" if got == want and not errors else "failed",
                    f"vCPU 1 0.3 s after its task was made SCHED_FIFO {GUEST_RT_PRIORITY} {by}: the policy last read "
                    f"(policy, RT priority) {got}, want {want}; request {None if seen is None else seen.get('wanted')} "
                    f"{'; '.join(errors)}".strip())  # fmt: skip

    def _self_promoted_case(self) -> Case:
        return self._promoted_case("pvsched_self_promoted_rt_task_visible", "rt-self", self.obs.rt_self_seen, "by itself")

    def _remote_promoted_case(self) -> Case:
        """The same change made from vCPU 0 (an admin's chrt -p): published by
        the kernel on vCPU 1, where the task runs (patch 0006)."""
        return self._promoted_case("pvsched_remote_promoted_rt_task_visible", "rt-other", self.obs.rt_other_seen, "from vCPU 0")

    def _admin_flip_case(self) -> Case:
        """An admin flipping vCPU 1's thread between SCHED_FIFO 60 and SCHED_OTHER
        while KVM boosts and restores it: every change KVM asked of the scheduler
        over the phase was applied (a restore built from a policy/priority pair
        read while the admin changed it is refused), and the race was run from
        both sides: KVM boosted the thread and kept the admin's FIFO 60."""
        name = "pvsched_boosts_race_admin_changes"
        before, after, _, start, end = self._around("admin-flip", "admin-flip-done")
        tid = str(self.obs.threads.get(1, -1))
        keys = ("boosts", "kept_rt", "setattr_failures")
        if tid not in before or tid not in after or any(k not in r for k in keys for r in (before[tid], after[tid])):
            return Case(name, "level1", "failed", f"no KVM row of vCPU 1 (tid {tid}) with {keys} around the admin-flip phase")
        grew = {k: int(after[tid][k]) - int(before[tid][k]) for k in keys}
        flips = self.obs.admin_flips
        decided = grew["boosts"] + grew["kept_rt"]
        raced = (flips is not None and flips >= ADMIN_FLIP_MIN_FLIPS and grew["boosts"] > 0 and grew["kept_rt"] > 0
                 and decided >= ADMIN_FLIP_MIN_DECISIONS)  # fmt: skip
        ok = raced and grew["setattr_failures"] == 0
        refusal = f"; the last refusal: {after[tid].get('last_refusal')}" if grew["setattr_failures"] else ""
        return Case(name, "level1", "passed" if ok else "failed",
                    f"{flips} flips to FIFO {ADMIN_RT_PRIORITY} (at least {ADMIN_FLIP_MIN_FLIPS}) in "
                    f"{(end or 0) - (start or 0):.2f} s; KVM: {grew['boosts']} boosts, {grew['kept_rt']} kept the admin's FIFO "
                    f"(at least {ADMIN_FLIP_MIN_DECISIONS} together, some of each), "
                    f"{grew['setattr_failures']} refused by the scheduler{refusal}")  # fmt: skip

    def cases(self) -> list[Case]:
        per_phase: dict[str, int] = {}
        for smp in self.obs.samples:
            per_phase[smp.phase] = per_phase.get(smp.phase, 0) + 1
        diag = f"samples per phase {per_phase}, longest gap {self.obs.max_sample_gap:.2f} s"
        cases = [Case("pvsched_host_observer", "level1", "failed" if self.obs.errors else "passed", "; ".join([*self.obs.errors, diag]))]
        stats = self.obs.policy.vcpus()
        tids = set(self.obs.threads.values())

        def case(name: str, ok: bool, why: str) -> None:
            cases.append(Case(name, "level1", "passed" if ok else "failed", "" if ok else why))

        cases.append(self._every_vcpu_case(tids))
        # Each of KVM's four hooks called the policy for every vCPU (a missing hook leaves the others working).
        silent = [f"vCPU {v['vcpu_id']} {hook}" for v in stats for hook in HOOKS if not int(v.get(hook, 0))]
        case("pvsched_policy_called_at_every_hook", bool(stats) and not silent,
             f"never called: {silent or 'no statistics'}")  # fmt: skip
        cases.append(self._pcpu_case())
        rt_window = self._window("rt", "rt-done")
        seen_in_time = self.obs.rt_seen_after is not None and rt_window is not None and self.obs.rt_seen_after <= rt_window
        case("pvsched_rt_task_visible_to_host", seen_in_time,
             f"vCPU 1's RT task (FIFO {GUEST_RT_PRIORITY}) seen {self.obs.rt_seen_after} s into an RT phase of {rt_window} s")  # fmt: skip
        case("pvsched_rt_priority_visible_to_host", 50 in self.obs.rt_priorities,
             f"RT priorities the host saw: {sorted(self.obs.rt_priorities)} (the guest task runs at 50)")  # fmt: skip
        rt_samples = [s for s in self.obs.samples if s.phase == "rt"]
        fifo = [s for s in rt_samples if SCHED_FIFO in s.policies.values()]
        case("pvsched_boost_sets_vcpu_thread_fifo", bool(fifo),
             f"{len(rt_samples)} samples of the vCPU threads during the RT phase, none SCHED_FIFO")  # fmt: skip
        # RT work is boosted at the policy's boost priority, a guest's bare
        # requests (the hostile and hints phases) only at its hint priority.
        rt_prios = set().union(*(s.fifo_priorities() for s in rt_samples))
        hint_prios = set().union(*(s.fifo_priorities() for s in self.obs.samples if s.phase in ("hostile", "hints")))
        prios = f"FIFO priorities of vCPU threads: RT phase {sorted(rt_prios)}, hostile and hints phases {sorted(hint_prios)}"
        ok = BOOST_PRIORITY in rt_prios and HINT_PRIORITY in hint_prios
        cases.append(Case("pvsched_rt_work_boosted_above_hints", "level1", "passed" if ok else "failed",
                          prios if ok else f"{prios} (want {BOOST_PRIORITY} and {HINT_PRIORITY})"))  # fmt: skip
        # vCPU 1 ran the RT task; vCPU 0 may be boosted by its own interrupts.
        rt_tid = self.obs.threads.get(1)
        # A window starting UNBOOST_SETTLE_S into rt-done (the guest's own check
        # waits as long), not the phase's end: phases are dated by console
        # lines, which arrive late under TCG, and the next phase (malformed)
        # writes an RT policy into the area on purpose. A stuck RT boost is
        # FIFO in every sample of the window; a short critical-section boost
        # (the guest's IRQs) may show in some (seen).
        done_at = self.obs.phase_times.get("rt-done")
        done = [s.policies.get(rt_tid) for s in self.obs.samples if rt_tid is not None and s.phase == "rt-done"
                and done_at is not None and done_at + UNBOOST_SETTLE_S <= s.t <= done_at + UNBOOST_SETTLE_S + UNBOOST_WINDOW_S]  # fmt: skip
        sampled = [p for p in done if p is not None]  # a thread not sampled says nothing
        unboosted = [p for p in sampled if p == SCHED_OTHER]
        case("pvsched_unboost_restores_vcpu_thread",
             rt_tid is not None and len(sampled) >= UNBOOST_MIN_SAMPLES and 2 * len(unboosted) > len(sampled),
             f"vCPU 1 (tid {rt_tid}) policies {UNBOOST_SETTLE_S}-{UNBOOST_SETTLE_S + UNBOOST_WINDOW_S} s after the RT "
             f"phase: {done or 'no samples'} (want at least {UNBOOST_MIN_SAMPLES} sampled, most SCHED_OTHER)")  # fmt: skip
        # Judged on what the policy saw before the malformed phase, whose garbage sets any bit.
        before_garbage = self._stats_before("malformed")
        hard = sum(v.get("hardirq_seen", 0) for v in before_garbage)
        soft = sum(v.get("softirq_seen", 0) for v in before_garbage)
        case("pvsched_host_sees_irq_bits", hard > 0 and soft > 0,
             f"events that saw the guest in a hard IRQ: {hard}, in a soft IRQ: {soft}, before the malformed phase "
             f"({len(before_garbage)} vCPUs)")  # fmt: skip
        cases.append(self._malformed_case())
        cases.extend(self._cs_probe_cases())
        cases.append(self._preempt_clears_case())
        cases.append(self._hotplug_case())
        cases.append(self._shipped_cap_case())
        cases.append(self._hostile_case())
        cases.append(self._vm_budget_case())
        cases.append(self._dodge_case())
        cases.extend(self._long_boost_cases())
        cases.append(self._unsliced_boost_case())
        cases.extend(self._admin_cases())
        cases.append(self._resumes_after_admin_case())
        cases.append(self._self_promoted_case())
        cases.append(self._remote_promoted_case())
        cases.append(self._admin_flip_case())
        cases.append(self._rt_only_while_boosted_case())
        cases.append(self._setattr_case())
        cases.append(self._host_writes_case())
        cases.append(self._stale_throttle_case())
        cases.append(self._detach_case())
        # The hostile guest's requests, counted over its phase only (the malformed phase's garbage sets the flag too).
        requests = self._stat_delta("request_seen", "hostile", "hostile-done")
        case("pvsched_request_flag_seen", bool(requests), f"boost requests the policy saw during the hostile phase: {requests}")
        return cases

    def _hog_missing(self) -> bool:
        return any("rt-shared" in e for e in self.obs.errors)

    def _window(self, start: str, end: str) -> float | None:
        """Seconds between two phases' console lines, or None if either was not seen."""
        a, b = self.obs.phase_times.get(start), self.obs.phase_times.get(end)
        return None if a is None or b is None else b - a

    def _last_stats(self, since: float, until: float) -> list[dict[str, int]] | None:
        """The policy's per-vCPU statistics in the last sample taken in [since, until), or None."""
        inside = [(t, vcpus) for t, vcpus in self.obs.policy_samples if since <= t < until]
        return max(inside, key=lambda sample: sample[0])[1] if inside else None

    def _stats_before(self, phase: str) -> list[dict[str, int]]:
        """The policy's per-vCPU statistics in the last sample before `phase` began ([] if none)."""
        at = self.obs.phase_times.get(phase)
        return (self._last_stats(float("-inf"), at) if at is not None else None) or []

    def _stats_in(self, start: str, end: str) -> list[dict[str, int]] | None:
        """The policy's per-vCPU statistics in the last sample taken between two phases'
        starts (None if there is none, or either phase was not seen)."""
        a, b = self.obs.phase_times.get(start), self.obs.phase_times.get(end)
        return self._last_stats(a, b) if a is not None and b is not None else None

    def _every_vcpu_case(self, tids: set[int]) -> Case:
        """Every vCPU thread registered while the guest's RT task ran: the guest
        said so (its own check) before the phase began. A vCPU that only counts
        itself registered shows up here, not in the statistics of the whole run:
        hotplug and the dodge phase register every vCPU again later."""
        rows = self._stats_in("rt", "rt-done")
        registered = {int(v["tid"]) for v in rows or [] if int(v.get("registered", 0))}
        ok = bool(tids) and rows is not None and tids <= registered
        why = ("no sample of the policy's statistics in the RT phase" if rows is None
               else f"QMP vCPU threads {sorted(tids)}, registered in the policy's last sample of the RT phase: "
               f"{sorted(registered)}")  # fmt: skip
        return Case("pvsched_host_sees_every_vcpu", "level1", "passed" if ok else "failed", why)

    def _hotplug_case(self) -> Case:
        """vCPU 1 registered again in the hotplug phase: at the online after its
        offline and at the last online (the one after its INIT leaves none),
        so twice, and registered when rt-long began."""
        before = self._stats_before("hotplug")
        after = self._stats_in("rt-long", "rt-long-spin")
        cpu1_before = next((v for v in before if int(v.get("vcpu_id", -1)) == 1), {})
        cpu1_after = next((v for v in after or [] if int(v.get("vcpu_id", -1)) == 1), None)
        if cpu1_after is None:
            return Case("pvsched_hotplug_reregisters", "level1", "failed",
                        "no statistics of vCPU 1 in the policy's samples between rt-long and its spin")  # fmt: skip
        grew = int(cpu1_after.get("registrations", 0)) - int(cpu1_before.get("registrations", 0))
        ok = grew >= HOTPLUG_REGISTRATIONS and bool(int(cpu1_after.get("registered", 0)))
        why = (f"vCPU 1 registered {grew} times over the hotplug phase (want {HOTPLUG_REGISTRATIONS}: the online "
               f"after its offline, the last online), registered at its end: {cpu1_after.get('registered')}")  # fmt: skip
        return Case("pvsched_hotplug_reregisters", "level1", "passed" if ok else "failed", why)

    def _stat_delta(self, key: str, start: str, end: str, vcpu_id: int | None = None) -> int | None:
        """How much a policy statistic grew between two phases (summed over vCPUs, or
        `vcpu_id`'s alone); None without samples."""
        before, after = self._stats_before(start), self._stats_before(end)
        if vcpu_id is not None:
            before, after = ([v for v in rows if int(v.get("vcpu_id", -1)) == vcpu_id] for rows in (before, after))
        if not after:
            return None
        return sum(int(v.get(key, 0)) for v in after) - sum(int(v.get(key, 0)) for v in before)

    def _cs_probe_cases(self) -> list[Case]:
        """Each cs-<kind> phase ran sections of one kind on vCPU 1, each taking
        CS_PROBE_EXITS exits inside: the policy saw that kind's bit at least at
        every one of those exits (more from the entries after them and from
        other sections of the kind; a guest that does not mark the kind leaves
        only the rare device interrupt)."""
        want = CS_PROBE_SECTIONS * CS_PROBE_EXITS
        cases = []
        for kind, (name, stat) in CS_PROBE_KINDS.items():
            seen = self._stat_delta(stat, f"cs-{kind}", f"cs-{kind}-done", vcpu_id=1)
            why = (f"events on vCPU 1 that saw {stat.removesuffix('_seen')} over the cs-{kind} phase: {seen} "
                   f"(want >= {want}: {CS_PROBE_SECTIONS} sections x {CS_PROBE_EXITS} exits)")  # fmt: skip
            if seen is None:
                why = f"no statistics of the policy before cs-{kind}-done"
            cases.append(Case(name, "level1", "passed" if seen is not None and seen >= want else "failed", why))
        return cases

    def _preempt_clears_case(self) -> Case:
        """PREEMPT_DISABLED marks a task's preempt-off section and clears with it:
        over the rt-long spin, user space on vCPU 1, at most a small share of
        vCPU 1's events may see it (a bit left set shows at nearly all)."""
        name, start, end = "pvsched_preempt_bit_clears", "rt-long-spin", "rt-long-done"
        seen = self._stat_delta("preempt_seen", start, end, vcpu_id=1)
        counts = [self._stat_delta(k, start, end, vcpu_id=1) for k in EVENT_STATS]
        if seen is None or None in counts:
            return Case(name, "level1", "failed", f"no statistics of the policy before {end}")
        events = sum(c for c in counts if c is not None)
        ok = events >= PREEMPT_MIN_EVENTS and seen <= PREEMPT_MAX_SHARE_IN_USER * events
        why = (f"events on vCPU 1 over the {start} phase (an RT task in user space): {events}, "
               f"{seen} of them saw preempt_disabled (want >= {PREEMPT_MIN_EVENTS} events, "
               f"at most {PREEMPT_MAX_SHARE_IN_USER:.0%} with the bit)")  # fmt: skip
        return Case(name, "level1", "passed" if ok else "failed", why)

    def _pcpu_case(self) -> Case:
        """KVM follows the vCPU thread: after it was moved to another CPU, KVM reports that CPU."""
        name, tid = "pvsched_host_knows_pcpu", self.obs.threads.get(0)
        before = {int(r["tid"]): r.get("cpu") for r in self.obs.snapshots.get("malformed") or []}
        after = {int(r["tid"]): r.get("cpu") for r in self.obs.snapshots.get("malformed-done") or []}
        now = after.get(tid) if tid is not None else None
        if self.obs.pinned_cpu is None or tid is None or now is None:
            return Case(name, "level1", "failed", f"vCPU 0 (tid {tid}) was not moved or not read after: {before} -> {after}")
        ok = int(now) == self.obs.pinned_cpu
        why = f"vCPU 0 reported on CPU {before.get(tid)}, moved to CPU {self.obs.pinned_cpu}, then reported on CPU {now}"
        return Case(name, "level1", "passed" if ok else "failed", why)

    def _malformed_case(self) -> Case:
        """KVM's own count of malformed areas grew over the malformed phase (read errors are not malformed areas)."""
        name = "pvsched_malformed_areas_counted"
        before, after = self.obs.snapshots.get("malformed"), self.obs.snapshots.get("malformed-done")
        if not before or not after:
            return Case(name, "level1", "failed", f"no KVM snapshot around the malformed phase ({before}, {after})")
        grown = sum(int(r["malformed"]) for r in after) - sum(int(r["malformed"]) for r in before)
        return Case(name, "level1", "passed" if grown > 0 else "failed", f"KVM counted {grown} malformed areas in the phase")

    def _shipped_cap_case(self) -> Case:
        """KVM booted with the cap the series ships (docs/pvsched.md), and the
        phases judged at it ran under it (rt-long and dodge at the shipped vCPU
        budget and period, the VM's lifted): the cap is tested where users get it."""
        name, boot = "pvsched_cap_at_shipped_defaults", self.obs.boot_cap
        shipped = Cap.shipped()
        judged = {p: c for p, c in self.obs.caps.items() if p in ("hostile", "dodge", "rt-long")}
        vcpu_only = [judged.get("rt-long"), judged.get("dodge")]
        at_vcpu_budget = all(c is not None and (c.budget_us, c.period_us) == (shipped.budget_us, shipped.period_us) for c in vcpu_only)
        ok = boot is not None and boot.is_shipped() and judged.get("hostile") == shipped and at_vcpu_budget
        return Case(name, "level1", "passed" if ok else "failed",
                    f"KVM's cap at guest ready: {boot}; in the hostile, dodge and rt-long phases: {judged}; "
                    f"shipped: {shipped}")  # fmt: skip

    def _hostile_case(self) -> Case:
        before = {r["tid"]: r for r in self.obs.snapshots.get("hostile", [])}
        after = {r["tid"]: r for r in self.obs.snapshots.get("hostile-done", [])}
        start, end = self.obs.phase_times.get("hostile"), self.obs.phase_times.get("hostile-done")
        # KVM's counters are the vCPU's since its first registration: both readings are needed.
        tids = set(before) & set(after)
        cap = self.obs.caps.get("hostile")
        if not tids or start is None or end is None or cap is None:
            return Case("pvsched_hostile_guest_throttled", "level1", "failed",
                        f"no KVM rows of one vCPU on both sides of the hostile phase, or no cap read at its start: "
                        f"{sorted(before)} -> {sorted(after)}, cap {cap}")  # fmt: skip
        throttles = sum(int(after[t]["throttles"]) - int(before[t]["throttles"]) for t in tids)

        # The cap is on CPU time used while boosted (a boosted vCPU that
        # waits for its CPU or halts uses none); wall time boosted may
        # exceed it, and is reported beside it.
        def used(key: str) -> float:
            return max((int(after[t][key]) - int(before[t][key])) / 1e9 for t in tids)

        cpu_s, wall_s = used("boosted_cpu_ns"), used("boosted_ns")
        cap_s = cap.allowed_s(end - start)
        ok = throttles > 0 and cpu_s <= cap_s * 1.2
        return Case("pvsched_hostile_guest_throttled", "level1", "passed" if ok else "failed",
                    f"throttles={throttles}, most boosted vCPU used {cpu_s:.3f} s CPU ({wall_s:.3f} s wall) boosted, "
                    f"cap {cap_s:.3f} s CPU over {end - start:.2f} s")  # fmt: skip

    def _around(self, phase: str, done: str) -> tuple[Rows, Rows, list[str], float | None, float | None]:
        """KVM's rows by thread id at a phase's start and end, the threads in
        both, and the phase's start and end times."""
        before = {r["tid"]: r for r in self.obs.snapshots.get(phase, [])}
        after = {r["tid"]: r for r in self.obs.snapshots.get(done, [])}
        return before, after, sorted(set(before) & set(after)), self.obs.phase_times.get(phase), self.obs.phase_times.get(done)

    def _vm_budget_case(self) -> Case:
        """The hostile guest's vCPUs, all busy, together stay within the VM's
        budget (the shipped one: one vCPU's), and KVM says the VM's budget throttled them."""
        name = "pvsched_vm_budget_holds"
        before, after, tids, start, end = self._around("hostile", "hostile-done")
        cap = self.obs.caps.get("hostile")
        if not tids or start is None or end is None or cap is None or any("vm_throttles" not in after[t] for t in tids):
            return Case(
                name,
                "level1",
                "failed",
                f"no KVM rows with vm_throttles on both sides of the hostile phase, or no cap read at its start: "
                f"{sorted(before)} -> {sorted(after)}, cap {cap}",
            )
        used_s = sum(int(after[t]["boosted_cpu_ns"]) - int(before[t]["boosted_cpu_ns"]) for t in tids) / 1e9
        vm_throttles = sum(int(after[t]["vm_throttles"]) - int(before[t]["vm_throttles"]) for t in tids)
        cap_s = cap.allowed_s(end - start, vm=True)
        ok = vm_throttles > 0 and used_s <= cap_s * 1.2
        return Case(name, "level1", "passed" if ok else "failed",
                    f"the VM's {len(tids)} vCPUs used {used_s:.3f} s CPU boosted in {end - start:.2f} s "
                    f"(VM cap {cap_s:.3f} s); throttles by the VM's budget: {vm_throttles}")  # fmt: skip

    def _dodge_case(self) -> Case:
        """A guest that registers again whenever KVM throttles it stays capped:
        KVM's counters (which now outlive a registration) and the sampled
        policies of its vCPU threads both show the cap."""
        name = "pvsched_reregistering_guest_still_capped"
        before, after, tids, start, end = self._around("dodge", "dodge-done")
        cap = self.obs.caps.get("dodge")
        if not tids or start is None or end is None or cap is None or any("registrations" not in after[t] for t in tids):
            return Case(name, "level1", "failed",
                        f"no KVM rows with registrations around the dodge phase, or no cap read at its start: "
                        f"{before} -> {after}, cap {cap}")  # fmt: skip

        def grew(key: str) -> list[int]:
            return [int(after[t][key]) - int(before[t][key]) for t in tids]

        registrations, throttles = sum(grew("registrations")), sum(grew("throttles"))
        cpu_s = max(grew("boosted_cpu_ns")) / 1e9
        cap_s = cap.allowed_s(end - start)
        threads = set(self.obs.threads.values())
        phase = [s for s in self.obs.samples if s.phase == "dodge"]
        shares = {t: sum(s.policies.get(t) == SCHED_FIFO for s in phase) / len(phase) for t in threads} if phase else {}
        share = max(shares.values(), default=1.0)
        ok = (registrations > 0 and throttles > 0 and cpu_s <= cap_s * 1.2
              and len(phase) >= DODGE_MIN_SAMPLES and share <= DODGE_MAX_FIFO_SHARE)  # fmt: skip
        return Case(name, "level1", "passed" if ok else "failed",
                    f"{registrations} registrations and {throttles} throttles in {end - start:.2f} s; most boosted vCPU "
                    f"used {cpu_s:.3f} s CPU boosted (cap {cap_s:.3f} s); boosted in {share:.0%} of {len(phase)} samples "
                    f"(at most {DODGE_MAX_FIFO_SHARE:.0%})")  # fmt: skip

    def _spin(self, phase: str, what: str) -> _Spin | str:
        """vCPU 1's KVM rows around `phase`'s RT spin (`<phase>-spin` to
        `<phase>-done`) and the cap read for it, or why there are none."""
        tid = self.obs.threads.get(1)
        before = {int(r["tid"]): r for r in self.obs.snapshots.get(f"{phase}-spin", [])}
        after = {int(r["tid"]): r for r in self.obs.snapshots.get(f"{phase}-done", [])}
        start, end = self.obs.phase_times.get(f"{phase}-spin"), self.obs.phase_times.get(f"{phase}-done")
        if tid is None or tid not in before or tid not in after or start is None or end is None:
            return f"no KVM row of vCPU 1 (tid {tid}) around the {what}: {sorted(before)} -> {sorted(after)}"
        return _Spin(before[tid], after[tid], start, end, self.obs.caps.get(phase), self.obs.cap_at.get(phase))

    def _long_boost_cases(self) -> list[Case]:
        """vCPU 1 runs one RT task without a break under the shipped cap: KVM must
        throttle it at the budget in every period, not only when the guest asks again."""
        names = ("pvsched_long_boost_capped", "pvsched_boost_ends_at_its_slice")
        spin = self._spin("rt-long", "long RT phase")
        if isinstance(spin, str):
            return [Case(n, "level1", "failed", spin) for n in names]
        start, end, cap, cap_at = spin.start, spin.end, spin.cap, spin.cap_at
        if cap is None or cap_at is None or cap_at > start:
            why = f"the cap ({cap}) was read at {cap_at}, not before the RT task started at {start}"
            return [Case(n, "level1", "failed", why) for n in names]
        periods = (end - start) / (cap.period_us / 1e6)
        cpu_s, throttles, boosts = spin.grew("boosted_cpu_ns") / 1e9, spin.grew("throttles"), spin.grew("boosts")
        cap_s = cap.allowed_s(end - start)
        seen = f"{end - start:.2f} s ({periods:.1f} periods): boosts={boosts}, throttles={throttles}, {cpu_s:.3f} s CPU boosted"
        capped = throttles > 0 and cpu_s <= cap_s * 1.2
        # One boost without a break used up the budget before KVM had a slice:
        # the spin must have been cut into slices, none near the budget.
        long_case = Case(names[0], "level1", "passed" if capped else "failed", f"{seen}; cap {cap_s:.3f} s CPU")
        if any(k not in row for k in ("slice_ends", "longest_boost_ns") for row in (spin.before, spin.after)):
            return [long_case, Case(names[1], "level1", "failed", f"no KVM count of slices around the long RT phase: {spin.after}")]
        slices, longest_s = spin.grew("slice_ends"), int(spin.after["longest_boost_ns"]) / 1e9
        bound_s = cap.budget_us / 1e6 * LONGEST_BOOST_MAX_BUDGET_SHARE
        sliced = slices > 0 and longest_s <= bound_s
        return [long_case, Case(names[1], "level1", "passed" if sliced else "failed",
                                f"boosts KVM ended at their slice over the spin: {slices}; vCPU 1's longest boost "
                                f"{longest_s * 1e3:.1f} ms CPU (at most {bound_s * 1e3:.0f} ms, half the vCPU budget)")]  # fmt: skip

    def _unsliced_boost_case(self) -> Case:
        """The rt-long spin again with the slice lifted past the period: no
        slice ends a boost, so the cap timer alone must throttle vCPU 1 at its
        budget in every period."""
        name = "pvsched_budget_ends_an_unsliced_boost"
        spin = self._spin("rt-whole", "unsliced RT phase")
        if isinstance(spin, str):
            return Case(name, "level1", "failed", spin)
        start, end, cap, cap_at = spin.start, spin.end, spin.cap, spin.cap_at
        if cap is None or cap_at is None or cap_at > start or cap.slice_us < cap.period_us:
            return Case(
                name, "level1", "failed", f"the slice was not lifted before the RT task started at {start}: cap {cap} read at {cap_at}"
            )
        if any(k not in row for k in ("slice_ends", "throttles", "boosted_cpu_ns") for row in (spin.before, spin.after)):
            return Case(name, "level1", "failed", f"no KVM count of slices, throttles or boosted CPU around the phase: {spin.after}")
        cpu_s, throttles, slices = spin.grew("boosted_cpu_ns") / 1e9, spin.grew("throttles"), spin.grew("slice_ends")
        cap_s = cap.allowed_s(end - start)
        # No slice ended (the lift held), and the budget throttled the spin in time.
        ok = slices == 0 and throttles > 0 and cpu_s <= cap_s * 1.2
        return Case(name, "level1", "passed" if ok else "failed",
                    f"{end - start:.2f} s ({(end - start) / (cap.period_us / 1e6):.1f} periods) with no slice: "
                    f"boosts={spin.grew('boosts')}, throttles={throttles}, slices ended {slices}, {cpu_s:.3f} s CPU boosted; "
                    f"cap {cap_s:.3f} s CPU")  # fmt: skip

    def _setattr_case(self) -> Case:
        """Every boost and restore KVM asked of the scheduler was applied (KVM counts the refusals)."""
        name, rows = "pvsched_scheduler_applied_every_boost", self.obs.snapshots.get("detach") or []
        if not rows or any("setattr_failures" not in r for r in rows):
            return Case(name, "level1", "failed", f"no KVM counts of refused boosts at the guest's last phase: {rows[:2]}")
        failures = {r["tid"]: int(r["setattr_failures"]) for r in rows}
        boosts = sum(int(r["boosts"]) for r in rows)
        ok = boosts > 0 and not any(failures.values())
        # KVM keeps the last refusal as change:policy/priority:errno ("restore:0/60:-22").
        last = {r["tid"]: r.get("last_refusal", "unknown") for r in rows if int(r["setattr_failures"])}
        return Case(name, "level1", "passed" if ok else "failed",
                    f"{boosts} boosts; refused by the scheduler per thread: {failures}"
                    + (f"; the last refusal per thread: {last}" if last else ""))  # fmt: skip

    def _host_writes_case(self) -> Case:
        """KVM writes the host half when it changed, not at every entry, exit
        and halt (each write dirties the guest's page)."""
        name, rows = "pvsched_host_half_written_on_change", self.obs.snapshots.get("detach") or []
        if not rows or any("host_writes" not in r for r in rows):
            return Case(name, "level1", "failed", f"no KVM count of host-half writes at the guest's last phase: {rows[:2]}")
        writes = sum(int(r["host_writes"]) for r in rows)
        events = sum(int(r[k]) for r in rows for k in ("vmenter", "vmexit", "halt"))
        ok = writes > 0 and events > 0 and writes <= HOST_WRITES_MAX_SHARE * events
        return Case(name, "level1", "passed" if ok else "failed",
                    f"{writes} writes of the host half for {events} entries, exits and halts "
                    f"(at most {HOST_WRITES_MAX_SHARE:.0%})")  # fmt: skip

    def _stale_throttle_case(self) -> Case:
        """Every throttle lasted until its period's end: KVM counts one that would
        have ended before it began (a period not rolled over first)."""
        # At the end of the phases that throttle.
        name = "pvsched_throttles_last_their_period"
        rows = [r for end in CAP_PHASES.values() for r in self.obs.snapshots.get(end) or []]
        if not rows or any("stale_throttles" not in r for r in rows):
            return Case(name, "level1", "failed", f"no KVM counts of stale throttles after the throttling phases: {rows[:2]}")
        # rt-shared must have held vCPU 1 boosted across periods on less than
        # the budget in each: the case that needs the period rolled under a boost.
        tid = self.obs.threads.get(1, -1)
        before = {int(r["tid"]): r for r in self.obs.snapshots.get("rt-shared-spin") or []}.get(tid)
        after = {int(r["tid"]): r for r in self.obs.snapshots.get("rt-shared-done") or []}.get(tid)
        cap = self.obs.caps.get("rt-shared")
        if before is None or after is None or cap is None or self._hog_missing():
            return Case(
                name, "level1", "failed", f"no KVM rows of vCPU 1 around the shared-CPU phase, or no host RT task: {self.obs.errors[-1:]}"
            )
        held_s = (int(after["boosted_ns"]) - int(before["boosted_ns"])) / 1e9
        boosts = int(after["boosts"]) - int(before["boosts"])
        # No boost may end at a slice here: a boost cut within its period rolls
        # the period at its end, and the phase then tests nothing (the slice is lifted).
        slices = int(after.get("slice_ends", -1)) - int(before.get("slice_ends", 0))
        stale = [int(r["stale_throttles"]) for r in rows]
        throttles = sum(int(r["throttles"]) for r in rows)
        periods = held_s / (cap.period_us / 1e6)
        ok = throttles > 0 and periods >= 2 and boosts >= 1 and slices == 0 and not any(stale)
        # Reported, not judged: how often the timer's callback found the apply work had re-armed it first.
        races = sum(int(r.get("timer_races", 0)) for r in self.obs.snapshots.get("detach") or [])
        return Case(
            name,
            "level1",
            "passed" if ok else "failed",
            f"{throttles} throttles; ended before they began, per vCPU and phase: {stale}; "
            f"vCPU 1 boosted {held_s:.2f} s ({periods:.0f} periods) in {boosts} boosts beside the host RT task, "
            f"{slices} of them ended at a slice; "
            f"cap timer expiries found re-armed by a boost: {races}",
        )

    def _detach_case(self) -> Case:
        if self.obs.policy.stopped_at is None:
            return Case("pvsched_policy_detach_restores", "level1", "failed", "the policy was never detached")
        # Only samples of live threads: after the VM is gone every sample is trivially unboosted.
        after = [
            s for s in self.obs.samples
            if s.t > self.obs.policy.stopped_at + 0.1 and s.phase == "detach" and any(p is not None for p in s.policies.values())
        ]  # fmt: skip
        bad = [s for s in after if any(p == SCHED_FIFO for p in s.policies.values())]
        if not self.obs.boosted_at_detach:
            return Case("pvsched_policy_detach_restores", "level1", "failed",
                        f"no vCPU thread was boosted when the policy detached (within {DETACH_WAIT_S} s): nothing to restore")  # fmt: skip
        ok = bool(after) and not bad
        try:
            state: object = read_kvm_vcpus()
        except DebugfsUnreadable as exc:
            state = str(exc)
        return Case("pvsched_policy_detach_restores", "level1", "passed" if ok else "failed",
                    f"{len(after)} samples after detach, {len(bad)} with a SCHED_FIFO vCPU thread; kvm: {state}")  # fmt: skip
