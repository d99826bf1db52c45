"""Whether a failed level-1 attempt may be run again: only on proven emulator faults.

An attempt failed when a check failed, a splat was found, or level 1 ended
without its report. It is excused, and run again, only when every one of
those failures is explained by an emulator sign (lab.emulator_faults):

- the sign's own report has no frame of our code in its trace (a splat
  with `pvsched` or `sched_setattr_nopi` in its trace is ours, whatever
  else it looks like), and neither has any splat it would excuse. A frame
  the unwinder marked `?` is a stale address on the stack, not a caller,
  only when the trace was unwound to where the task entered the kernel
  (ORC does that; the guess unwinder marks every frame `?`): otherwise it
  counts;
- the sign comes at or before the failure in the same log: level 1's
  kernel log carries a mark for each failed check and each level-2 boot
  (lab.invm.marks), so a check that failed before the sign stands;
- a sign read from a CPU dump or the watchdog (where the machine was when
  it was stopped) explains only that level 1 was lost and the stall
  reports of a stuck CPU, not a WARNING or a failed check; a dump whose
  stacks name a function of ours (every word that points into the text
  counts, as `?` frames do) excuses nothing.

Otherwise the attempt's verdict stands and the run fails at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lab import emulator_faults, monitor
from lab.emulator_faults import AT_END, Evidence, timeline_name
from lab.protocol import FAILED, LEVEL2_BEGIN
from lab.splats import PATTERNS, Splat
from lab.symbols import SERIES_FUNCTION

# Frames of the series, the guest driver and the BPF policies ("func+0x1/0x2",
# a module tag, or a WARNING's "at arch/x86/kvm/pvsched.c:312"); not the
# kernel's version string, which names the lab too.
OUR_CODE = re.compile(rf"\b{SERIES_FUNCTION}\+0x[0-9a-f]+/0x[0-9a-f]+|\[pvsched\w*\]|/pvsched[\w.]*:\d+")
# A call-trace line the unwinder did not find on the call chain ("  ? func+0x1/0x2").
_UNRELIABLE_FRAME = re.compile(r"^\s*(?:\[\s*\d+\.\d+\]\s*)?\?\s")
# A frame, not marked `?`, where a task entered the kernel: a system call,
# a new task, a CPU's idle task.
_ENTRY_FRAME = re.compile(
    r"^\s*(?:\[\s*\d+\.\d+\]\s*)?(?:entry_SYSCALL_64\w*|ret_from_fork\w*|common_startup_64|"
    r"secondary_startup_64\w*|start_secondary|x86_64_start_\w+)\+0x[0-9a-f]+/0x[0-9a-f]+"
)
_PRINTK_TIME = re.compile(r"^\s*\[\s*(\d+\.\d+)\]")
HEADER_WINDOW_S = 1.0  # an oops prints its headers within this long before its Code line
# What a CPU that stopped running (a lost wakeup, a CPU stuck in a guest) makes the kernel print.
STALL_KINDS = frozenset({"rcu-stall", "hung-task", "soft-lockup", "hard-lockup"})
_ANY_SPLAT = re.compile("|".join(rx for _, rx in PATTERNS))
_END_OF_REPORT = re.compile(r"---\[ end (trace|Kernel panic)")
REPORT_LINES = 80  # a report's call trace ends within this many lines of the line asked about
# How far above a line its report may begin: a stack overflowing in a fault
# handler prints one frame per nesting, hundreds of lines within milliseconds
# (stress run 20261205T073507Z-6615: the header 760 lines above the frame the
# chain began with). The one-second window and the end markers bound it.
REPORT_START_LINES = 4000


@dataclass(frozen=True)
class Failure:
    what: str
    kind: str  # "check", "loss", or a splat kind
    source: str  # file name in the attempt's directory
    line_no: int  # 1-based; 0: not found in any log


@dataclass
class Judgement:
    excused: bool
    evidence: list[Evidence] = field(default_factory=list)  # the signs that may excuse
    unexplained: list[str] = field(default_factory=list)  # failures no sign explains, and why

    def summary(self) -> str:
        if self.excused:
            return "lost to the emulator: " + "; ".join(e.describe() for e in self.evidence)
        return "not excused: " + "; ".join(self.unexplained[:3])


def _lines(attempt_dir: Path, name: str) -> list[str]:
    path = attempt_dir / name
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def _seconds(line: str) -> float | None:
    m = _PRINTK_TIME.match(line)
    return float(m[1]) if m else None


def report_start(lines: list[str], line_no: int) -> int:
    """The first line of the report that `line_no` belongs to: the earliest
    splat header above it, printed within HEADER_WINDOW_S before it, with no
    earlier report's end in between (an oops prints "BUG: ...", "Oops: ..."
    and "RIP:" before its Code line)."""
    if not 0 < line_no <= len(lines):
        return line_no
    at = _seconds(lines[line_no - 1])
    start = line_no
    for i in range(line_no - 2, max(-1, line_no - 1 - REPORT_START_LINES), -1):
        if _END_OF_REPORT.search(lines[i]):
            break
        when = _seconds(lines[i])
        if at is not None and when is not None and at - when > HEADER_WINDOW_S:
            break
        if _ANY_SPLAT.search(lines[i]):
            start = i + 1
    return start


def _report(lines: list[str], line_no: int) -> list[str]:
    """The lines of the report that contains `line_no`, from its header to its
    end. In a console whose kernel lines carry printk times, a line without
    one is the lab's own output printed among them (e.g. a loader's
    /proc/PID/stack, run 20261204T133237Z-957e), not the kernel's report."""
    start = report_start(lines, line_no)
    timed = 0 < start <= len(lines) and _seconds(lines[start - 1]) is not None
    report = []
    for i in range(start - 1, min(len(lines), max(start, line_no) - 1 + REPORT_LINES)):
        if i > start - 1 and (_END_OF_REPORT.search(lines[i]) or (i > line_no - 1 and _ANY_SPLAT.search(lines[i]))):
            break
        if not timed or _seconds(lines[i]) is not None:
            report.append(lines[i])
    return report


def unwound_to_entry(report: list[str]) -> bool:
    """The unwinder followed the call chain to where the task entered the
    kernel: every frame it marked `?` is then a stale address on the stack,
    not a caller. The guess unwinder marks every frame `?` and never says so."""
    return any(_ENTRY_FRAME.match(line) for line in report)


def our_frame(lines: list[str], line_no: int) -> str:
    """A line of our code in the report that contains `line_no`, or ''. A
    frame marked `?` counts unless the trace was unwound to its entry."""
    report = _report(lines, line_no)
    reliable = unwound_to_entry(report)
    for line in report:
        if OUR_CODE.search(line) and not (reliable and _UNRELIABLE_FRAME.match(line)):
            return line.strip()
    return ""


def our_word_on_a_stack(attempt_dir: Path, source: str) -> str:
    """The first stack word of a level-1 CPU dump that names our code, or ''."""
    if not source.startswith("level1-cpus"):
        return ""
    return monitor.our_named_word("\n".join(_lines(attempt_dir, source)))


def mark_line(lines: list[str], mark: str) -> int:
    """The 1-based line of the first `mark` in a log, or 0."""
    return next((i + 1 for i, line in enumerate(lines) if mark in line), 0)


def failures_of(attempt_dir: Path, failed_checks: list[tuple[str, str]], splats: list[Splat], lost: str) -> list[Failure]:
    """The attempt's failures, each placed in its log: checks by their marks
    in the timeline, splats where they were found, a lost level 1 at the end."""
    timeline = timeline_name(attempt_dir)
    lines = _lines(attempt_dir, timeline)
    found = [Failure(f"{level}/{name} failed", "check", timeline, mark_line(lines, f"{FAILED} {level}/{name}"))
             for level, name in failed_checks]  # fmt: skip
    found += [Failure(f"{s.kind}: {s.line[:100]}", s.kind, Path(s.source).name, s.line_no) for s in splats]
    if lost:
        found.append(Failure(f"level 1 lost: {lost}", "loss", timeline, AT_END))
    return found


def _explains(sign: Evidence, failure: Failure, attempt_dir: Path, timeline: list[str], timeline_file: str) -> bool:
    if failure.kind == "loss":
        return True
    if sign.line_no == AT_END:
        return failure.kind in STALL_KINDS
    if failure.line_no == 0:
        return False  # a failure we cannot place cannot be shown to come after the sign
    sign_lines = _lines(attempt_dir, sign.source)
    start = report_start(sign_lines, sign.line_no)
    if failure.source == sign.source:
        return failure.line_no >= start
    if sign.source == timeline_file and failure.source.startswith("level2-console-"):
        # A level-1 sign before that guest started came before all it printed.
        begun = mark_line(timeline, f"{LEVEL2_BEGIN} {failure.source}")
        return 0 < start <= begun
    if failure.source == timeline_file and sign.source.startswith("level2-console-"):
        # A guest's sign explains what failed after that guest started and
        # before the next one did: a later guest's failures are its own.
        begun = mark_line(timeline, f"{LEVEL2_BEGIN} {sign.source}")
        after = next((i + 1 for i, line in enumerate(timeline[begun:], begun) if LEVEL2_BEGIN in line), len(timeline) + 1)
        return 0 < begun <= failure.line_no < after
    return False


def judge(attempt_dir: Path, signs: list[Evidence], failures: list[Failure]) -> Judgement:
    """Excused only if every failure is explained by a sign free of our code."""
    timeline_file = timeline_name(attempt_dir)
    timeline = _lines(attempt_dir, timeline_file)
    unexplained: list[str] = []
    usable: list[Evidence] = []
    for sign in signs:
        frame = our_frame(_lines(attempt_dir, sign.source), sign.line_no) if sign.line_no else ""
        word = "" if sign.line_no else our_word_on_a_stack(attempt_dir, sign.source)
        if frame:
            unexplained.append(f"{sign.signature} with our code in its trace ({frame[:100]}) is not the emulator's")
        elif word:
            unexplained.append(f"{sign.signature} with our code on a CPU's stack ({word[:100]}) is not the emulator's")
        elif sign.signature not in emulator_faults.ATTRIBUTABLE:
            unexplained.append(f"{sign.signature} was never seen on the unpatched kernel (README, emulator control): not proof")
        else:
            usable.append(sign)
    for failure in failures:
        if failure.kind not in ("check", "loss"):
            frame = our_frame(_lines(attempt_dir, failure.source), failure.line_no) if failure.line_no else ""
            if frame:
                unexplained.append(f"{failure.what}: our code in its trace ({frame[:100]})")
                continue
        if not any(_explains(sign, failure, attempt_dir, timeline, timeline_file) for sign in usable):
            where = f"{failure.source}:{failure.line_no}" if failure.line_no else "no mark in the kernel log"
            if usable:
                why = "no emulator sign at or before it"
            else:
                why = "no emulator sign the control has shown on the unpatched kernel" if signs else "no emulator sign"
            unexplained.append(f"{failure.what} ({where}): {why}")
    unexplained = list(dict.fromkeys(unexplained))  # one sign found in two dumps is said once
    excused = bool(usable) and not unexplained and bool(failures)
    return Judgement(excused, usable if excused else signs, unexplained)
