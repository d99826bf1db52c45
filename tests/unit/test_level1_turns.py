"""Level-1 runs under TCG take turns machine-wide (lab.vm.tcg_turn), with two real processes."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path


def _hold(mode: str, lock: str, log: str, name: str) -> None:
    from lab import ui
    from lab.vm import tcg_turn

    with Path(log).open("a") as out:
        ui.info = lambda msg: out.write(f"{name} said: {msg}\n") or out.flush()  # type: ignore[assignment, func-returns-value]
        with tcg_turn(mode, name, Path(lock)):
            out.write(f"{name} in {time.monotonic()}\n")
            out.flush()
            time.sleep(1.0)
            out.write(f"{name} out {time.monotonic()}\n")
            out.flush()


def _run_two(tmp_path: Path, mode: str) -> tuple[list[str], list[tuple[float, float]]]:
    log, lock = tmp_path / "log", tmp_path / "turn.lock"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hold, args=(mode, str(lock), str(log), f"run{i}")) for i in range(2)]
    for p in procs:
        p.start()
        time.sleep(0.3)  # the second starts while the first holds its turn
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    lines = log.read_text().splitlines()
    spans = []
    for name in ("run0", "run1"):
        t_in = float(next(ln.split()[-1] for ln in lines if ln.startswith(f"{name} in ")))
        t_out = float(next(ln.split()[-1] for ln in lines if ln.startswith(f"{name} out ")))
        spans.append((t_in, t_out))
    return lines, spans


def test_two_level1_runs_under_tcg_never_overlap_and_the_second_says_it_waits(tmp_path: Path) -> None:
    lines, spans = _run_two(tmp_path, "tcg")
    (first, second), later = sorted(spans), "run1" if spans[1] > spans[0] else "run0"
    assert second[0] >= first[1]
    assert any(ln.startswith(f"{later} said:") and "waiting for it to end" in ln for ln in lines), lines
    assert any(ln.startswith(f"{later} said:") and "waited" in ln for ln in lines), lines


def test_under_kvm_runs_do_not_wait(tmp_path: Path) -> None:
    lines, spans = _run_two(tmp_path, "kvm")
    first, second = sorted(spans)
    assert second[0] < first[1]
    assert not any("said:" in ln for ln in lines)
