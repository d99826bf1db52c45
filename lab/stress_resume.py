"""The stress suite's bookkeeping across level-1 boots, on the host: which
parts passed, the rounds kept from a boot that was lost, and the end states
of several boots as one. Level 1 runs the parts (lab.invm.stress)."""

from __future__ import annotations

import re
from typing import Any

from lab.protocol import LEVEL2_BEGIN, stress_trouble
from lab.splats import Splat


def part_in_trouble(part: dict[str, Any]) -> bool:
    """A failure or a lost round (a guest that reset or hung, measured
    again): only an emulator sign excuses either, and then the host reruns
    the part (lab.suites.stress); its lost rounds are then `lost_excused`."""
    return bool(part.get("failures") or part.get("lost"))


def trouble_checks(part: dict[str, Any]) -> list[tuple[str, str]]:
    """The checks the host judges for a part that did not pass: one per
    failure and lost round, each at its own mark (lab.invm.stress); the part
    itself if it has none (a part that ran no round: no mark, never excused)."""
    troubles = len(part.get("failures", [])) + len(part.get("lost", []))
    return [("stress", stress_trouble(part["name"], n)) for n in range(1, troubles + 1)] or [("stress", part["name"])]


def part_passed(part: dict[str, Any]) -> bool:
    """No trouble, and some round run."""
    return not part_in_trouble(part) and part["rounds"] > 0


# Parts whose rounds are independent, so a part cut short by a lost level-1
# boot resumes in the next one: the option naming where it resumes. Churn's
# is the first round it runs; the hostile part's, the measurements of the
# rounds it keeps (each round's three variants whole, so every variant
# keeps its share of every boot's drift), the others measured anew.
RESUMABLE = {"churn": "churn_from", "hostile": "hostile_kept"}


class KeptRounds:
    """Rounds of a resumable part kept from level-1 boots that did not finish
    it: lost on the way, or finished with evidence of an emulator fault and a
    failure in the part. Only rounds that ended clean are kept; the rounds
    that failed there are run again, and their failures are listed with the
    part (`kept_from`), not hidden."""

    def __init__(self) -> None:
        self.kept: dict[str, dict[str, Any]] = {}

    def keep(self, part: dict[str, Any], attempt: int) -> None:
        clean = int(part.get("clean_rounds", 0))
        if part["name"] not in RESUMABLE or clean == 0:
            return
        kept = self.kept.setdefault(part["name"], {"rounds": 0, "lost_excused": [], "seconds": 0.0, "from": [], "results": {}})
        kept["rounds"] += clean
        kept["results"].update(part.get("round_results", {}))
        # Kept only from a boot the host excused: its lost rounds came after an emulator sign.
        kept["lost_excused"] += part.get("lost_excused", []) + part.get("lost", [])
        kept["seconds"] += float(part["seconds"])
        came = {"attempt": attempt, "rounds": clean, "failures_not_kept": part["failures"]}
        if part.get("round_results"):
            # The hostile part counts measurements as its rounds: which of its rounds these were.
            came["round_numbers"] = sorted(int(n) for n in part["round_results"])
        kept["from"].append(came)

    def resume_options(self) -> dict[str, Any]:
        """Options for the next boot: where each resumable part starts."""
        return {
            "churn_from": int(self.kept.get("churn", {}).get("rounds", 0)),
            "hostile_kept": dict(self.kept.get("hostile", {}).get("results", {})),
        }

    def merge(self, part: dict[str, Any]) -> dict[str, Any]:
        """A part as finished in a later boot, with the rounds kept for it."""
        kept = self.kept.pop(part["name"], None)
        if kept is None:
            return part
        return {
            **part,
            "rounds": part["rounds"] + kept["rounds"],
            "clean_rounds": int(part.get("clean_rounds", 0)) + kept["rounds"],
            "lost": part.get("lost", []),
            "lost_excused": kept["lost_excused"] + part.get("lost_excused", []),
            "seconds": round(float(part["seconds"]) + kept["seconds"], 1),
            "kept_from": kept["from"],
        }


def merged_end_state(states: list[dict[str, Any]]) -> dict[str, Any]:
    """The end states of several level-1 boots as one: anything left in any
    boot counts; sched_ext is reported from the first boot that left it on."""
    scx = next((s["scx_state"] for s in states if s["scx_state"] not in ("disabled", "unavailable")), states[-1]["scx_state"])
    unread = any(s["registered_areas"] is None for s in states)
    return {
        # None: some boot's KVM debugfs could not be read, which fails the check.
        "registered_areas": None if unread else sum(int(s["registered_areas"]) for s in states),
        "vms_left": None if any(s["vms_left"] is None for s in states) else [vm for s in states for vm in s["vms_left"]],
        "qemu_processes_left": [pid for s in states for pid in s["qemu_processes_left"]],
        "scx_state": scx,
        "counter_snapshots": states[-1]["counter_snapshots"],
        "inconsistent_counters": states[-1]["inconsistent_counters"],
    }


_CONSOLE = re.compile(r"level2-console-stress-([\w.-]+?)\.log$")


def parts_hit_by_splats(splats: list[Splat], level1_log: list[str], names: list[str]) -> list[str]:
    """The parts, of `names` in the order run, that a finished boot's splats
    leave without evidence: the part whose guest printed a level-2 splat;
    for a level-1 splat, the part whose guest last began before it in level
    1's log and every part after it (level 1 may not be whole since), or
    every part when no guest began before it."""
    hit: set[str] = set()

    def part_of(console: str) -> str | None:
        found = _CONSOLE.search(console)
        label = found.group(1) if found else ""
        return next((n for n in names if label == n or label.startswith(f"{n}-")), None)

    for splat in splats:
        if splat.level == "level2":
            part = part_of(splat.source)
            hit.update([part] if part else names)
            continue
        begun = [line for line in level1_log[: max(splat.line_no, 1)] if LEVEL2_BEGIN in line]
        first = part_of(begun[-1].split(LEVEL2_BEGIN, 1)[1].strip()) if begun else None
        hit.update(names[names.index(first) :] if first else names)
    return [n for n in names if n in hit]
