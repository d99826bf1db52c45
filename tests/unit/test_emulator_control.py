"""The emulator control's bookkeeping: interleaving, counting, the table."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from oops_samples import NULL_PERCPU_OOPS, NULL_PERCPU_TRACE, SYSTEM_MAP

from lab import emulator_control as ctl


def test_every_cell_runs_once_per_round_in_a_rotated_order() -> None:
    order = list(ctl.rounds(["base", "boost", "scx"], 3))
    assert order[:3] == [(1, "base"), (1, "boost"), (1, "scx")]
    assert order[3:6] == [(2, "boost"), (2, "scx"), (2, "base")]
    assert [cell for _, cell in order].count("scx") == 3


def _run_dir(tmp_path: Path, dmesg: str, guest: str = "") -> Path:
    out = tmp_path / "boost-1"
    out.mkdir()
    (out / "level1-dmesg.txt").write_text(dmesg)
    (out / "level1-console.log").write_text("")
    (out / "level2-console-control-0.log").write_text(guest)
    (tmp_path / "System.map").write_text(SYSTEM_MAP)
    return out


def test_a_run_with_the_oops_counts_the_sign_and_the_splat(tmp_path: Path) -> None:
    out = _run_dir(tmp_path, "[    1.0] boot\n" + NULL_PERCPU_OOPS + NULL_PERCPU_TRACE)
    row = {"cell": "boost", "run": 1, "seconds": 60.0, **ctl.classify(out, "tcg", tmp_path / "System.map", "", {"boots": []})}
    names = ctl.events(row)
    assert "sign: null-percpu" in names
    assert any(n.startswith("splat: ") and "our code" not in n for n in names)


def test_a_splat_with_our_frame_is_counted_as_ours(tmp_path: Path) -> None:
    ours = (NULL_PERCPU_OOPS + NULL_PERCPU_TRACE).replace("svm_vcpu_run+0x3a1/0x7a0", "__kvm_pvsched_event+0x51/0x190")
    out = _run_dir(tmp_path, "[    1.0] boot\n" + ours)
    row = {"cell": "boost", "run": 1, "seconds": 60.0, **ctl.classify(out, "tcg", tmp_path / "System.map", "", {"boots": []})}
    assert any("(our code in trace)" in n for n in ctl.events(row))


def test_a_lost_boot_without_a_sign_is_its_own_row() -> None:
    row = {"cell": "base", "run": 1, "seconds": 10.0, "lost": "timed out", "signs": [], "splats": [], "boots_failed": ["hang"]}
    assert ctl.events(row) == {"level 1 lost (no sign)", "level-2 boot failed (no sign)"}


def test_a_run_whose_policy_never_attached_is_not_a_clean_run_of_its_cell() -> None:
    """A base-scx (or boost, scx) run without its scheduler attached measured
    another cell: it must show, not count as that cell's clean run."""
    row = {"cell": "base-scx", "run": 1, "seconds": 60.0, "lost": "", "signs": [], "splats": [], "boots_failed": [],
           "policy_error": "sched_ext state disabled after 60 s"}  # fmt: skip
    assert ctl.events(row) == {"policy not attached"}
    assert ctl.events({**row, "policy_error": ""}) == set()


def test_the_table_counts_runs_per_cell_not_occurrences() -> None:
    clean = {"lost": "", "signs": [], "splats": [], "boots_failed": []}
    sign = {**clean, "signs": [{"signature": "null-percpu", "where": "x"}, {"signature": "null-percpu", "where": "y"}]}
    runs = [
        {"cell": "base", "run": 1, "seconds": 60.0, **clean},
        {"cell": "base", "run": 2, "seconds": 60.0, **clean},
        {"cell": "boost", "run": 1, "seconds": 90.0, **sign},
        {"cell": "boost", "run": 2, "seconds": 90.0, **sign},
    ]
    md = ctl.table(runs, ["base", "boost"])
    assert "| event | base (2 runs) | boost (2 runs) |" in md
    assert "| sign: null-percpu | 0 | 2 |" in md
    assert "| minutes of level 1 | 2.0 | 3.0 |" in md
    empty = ctl.table([{"cell": "base", "run": 1, "seconds": 60.0, **clean}], ["base"])
    assert "(nothing: no sign, splat or loss in any run) | 0 |" in empty


def readme_control_table(text: str) -> dict[str, dict[str, int]]:
    """The README's emulator control table: event -> cell -> runs it occurred in."""
    section = text.split("### Which signs may excuse: the emulator control", 1)[1].splitlines()
    start = next(i for i, ln in enumerate(section) if ln.startswith("| event |"))
    rows = []
    for ln in section[start:]:
        if not ln.startswith("|"):
            break  # the first table only
        rows.append(ln)
    cells = [c.strip().split(" (")[0] for c in rows[0].strip("|").split("|")[1:]]
    table = {}
    for row in rows[1:]:
        parts = [p.strip() for p in row.strip("|").split("|")]
        if parts[0].startswith("---") or not parts[1].isdigit():
            continue
        table[parts[0]] = dict(zip(cells, (int(p) for p in parts[1:]), strict=True))
    return table


def test_only_signs_seen_on_the_unpatched_kernel_may_excuse() -> None:
    from lab import emulator_faults
    from lab.paths import REPO

    table = readme_control_table((REPO / "README.md").read_text())
    assert table, "the README has no emulator control table"
    from lab.emulator_control import UNPATCHED

    seen_on_base = {
        event.removeprefix("sign: ")
        for event, counts in table.items()
        if event.startswith("sign: ") and any(counts.get(cell, 0) > 0 for cell in UNPATCHED)
    }
    assert seen_on_base == emulator_faults.ATTRIBUTABLE


def test_ipi_storm_bounces_between_two_processes_and_reports_its_trips(tmp_path: Path) -> None:
    import os
    import time

    from lab.invm.ipi_storm import IpiStorm

    last = max(os.sched_getaffinity(0))
    storm = IpiStorm((min(os.sched_getaffinity(0)), last), tmp_path / "trips.txt")
    storm.start()
    time.sleep(0.3)
    trips = storm.stop()
    assert trips > 100
    assert storm.pids == []


def test_ipi_storm_ends_when_its_peer_dies_and_on_sigterm_while_blocked(tmp_path: Path) -> None:
    """A process of the storm blocked in read() must end on EOF when its peer
    dies and on SIGTERM; a unit run hung here when it held its peer's pipe end."""
    import os
    import signal
    import time

    from lab.invm.ipi_storm import IpiStorm

    def ended(pid: int, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return False

    cpu = min(os.sched_getaffinity(0))
    storm = IpiStorm((cpu, cpu), tmp_path / "trips.txt")
    storm.start()
    time.sleep(0.1)
    first, second = storm.pids
    os.kill(second, signal.SIGKILL)
    os.waitpid(second, 0)
    assert ended(first, 5.0), "the survivor never saw its peer's end"
    storm.pids = []


def test_rescan_counts_a_finished_run_again_with_todays_signs(tmp_path: Path) -> None:
    import json

    from oops_samples import WILD_RETURN_FROM_HALT_OOPS

    run = tmp_path / "run"
    (run / "base-ipi-1").mkdir(parents=True)
    (run / "base-ipi-1" / "level1-console.log").write_text("booting\n" + WILD_RETURN_FROM_HALT_OOPS)
    as_run = {"cell": "base-ipi", "run": 1, "seconds": 60.0, "dir": "base-ipi-1", "lost": "level 1 ended", "signs": [],
              "splats": [], "boots_failed": [], "policy_error": "", "boots": 0, "ipi_storm_trips": None}  # fmt: skip
    data = {
        "cells": ["base-ipi"],
        "runs_per_cell": 1,
        "boots_per_run": 3,
        "tcg_threads": "multi",
        "kernels": {"base-ipi": "k"},
        "runs": [as_run],
    }
    (run / "control.json").write_text(json.dumps(data))
    md = ctl.rescan(run, tmp_path / "kernels")
    assert "| sign: wild-return-from-halt | 1 |" in md and "| level 1 lost | 1 |" in md
    assert json.loads((run / "control-as-run.json").read_text())["runs"][0]["signs"] == []  # what the run itself counted stays


def test_the_kernels_scx_example_counts_as_attached_only_once_sched_ext_says_so(tmp_path: Path, monkeypatch, runner) -> None:  # type: ignore[no-untyped-def]
    """base-scx must not run its boots believing sched_ext is on when the
    example never enabled it (an absent sysfs state, a binary that exits)."""
    from lab.invm import scx_example

    state = tmp_path / "state"
    state.write_text("disabled\n")
    from lab.invm import pvsched_host

    for module in (scx_example, pvsched_host):
        monkeypatch.setattr(module, "scx_state", lambda: state.read_text().strip())
    exits = tmp_path / "exits"
    exits.write_text("#!/bin/sh\necho 'no sched_ext here'\nexit 1\n")
    exits.chmod(0o755)
    why = scx_example.ScxExample(runner, str(exits)).start(timeout=5)
    assert "sched_ext state disabled" in why and "no sched_ext here" in why

    # One that enables sched_ext and disables it again on SIGTERM.
    attaches = tmp_path / "attaches"
    attaches.write_text(f"#!/bin/sh\ntrap 'echo disabled > {state}; exit 0' TERM\necho enabled > {state}\nwhile :; do sleep 0.1; done\n")
    attaches.chmod(0o755)
    example = scx_example.ScxExample(runner, str(attaches))
    assert example.start(timeout=5) == ""
    assert example.stop() == "disabled"


def test_rt_flip_finds_only_qemu_kvm_vcpu_threads(tmp_path: Path) -> None:
    from lab.invm.rt_flip import vcpu_threads

    for pid, tid, comm in ((10, 11, "CPU 0/KVM"), (10, 12, "CPU 1/KVM"), (10, 13, "qemu-system-x86"),
                           (20, 21, "CPU 0/TCG"), (20, 22, "CPU 12/KVM\n"), (30, 31, "xCPU 0/KVM")):  # fmt: skip
        task = tmp_path / str(pid) / "task" / str(tid)
        task.mkdir(parents=True)
        (task / "comm").write_text(comm)
    assert vcpu_threads(tmp_path) == [11, 12, 22]


def test_a_flip_run_that_flipped_nothing_is_not_a_clean_run() -> None:
    row = {"signs": [], "splats": [], "lost": "", "boots_failed": [], "rt_flips": 0}
    assert "no vCPU thread flipped" in ctl.events(row)
    assert ctl.events({**row, "rt_flips": 120}) == set()
    assert "base-flip" in ctl.UNPATCHED


def test_a_load_run_whose_load_ended_early_is_not_a_clean_run() -> None:
    row = {"signs": [], "splats": [], "lost": "", "boots_failed": [], "host_load_ran": False}
    assert "host load not kept up" in ctl.events(row)
    assert ctl.events({**row, "host_load_ran": True}) == set()
    assert ctl.events({**row, "host_load_ran": None}) == set()  # a cell without the load
    assert "base-load" in ctl.UNPATCHED and ctl.POLICY["base-load"] == "none"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("stress-ng") or not shutil.which("cyclictest"),
                    reason="needs root (cyclictest at SCHED_FIFO), stress-ng and cyclictest (`python -m lab doctor`)")  # fmt: skip
def test_host_load_runs_stress_ng_and_cyclictest_and_says_when_one_died(runner) -> None:  # type: ignore[no-untyped-def]
    import signal
    import time

    from lab.invm.host_load import HostLoad

    load = HostLoad(runner)
    load.start()
    time.sleep(1)
    assert [p.poll() for p in load._procs] == [None, None]
    assert "stress-ng --temp-path /tmp --cpu" in load._procs[0].log.read_text()
    assert load.stop() is True
    assert all(p.poll() is not None for p in load._procs)
    # One of them gone before the end: the run did not have the load throughout.
    load = HostLoad(runner)
    load.start()
    load._procs[1].stop(signal.SIGKILL)
    assert load.stop() is False


def test_a_mixed_cell_boots_one_builds_level_1_and_the_others_guests(tmp_path: Path) -> None:
    def cell(name: str) -> ctl.Cell:
        cfg = {"guest_kernel": f"{name}/bzImage", "guest_initramfs": f"{name}/initramfs", "pvsched": {"loader": "x"}}
        return ctl.Cell(name, object(), cfg, tmp_path / name / "System.map", {"accel": "tcg"}, f"{name}-key")  # type: ignore[arg-type]

    base, ours = cell("base"), cell("patched")
    mixed = ctl.combine("l2-ours", base, ours)
    assert (mixed.level1, mixed.system_map, mixed.kernel_key) == (base.level1, base.system_map, "base-key")
    assert (mixed.cfg["guest_kernel"], mixed.cfg["guest_initramfs"]) == ("patched/bzImage", "patched/initramfs")
    assert base.cfg["guest_kernel"] == "base/bzImage"  # the setup it came from is left as it was


def test_the_cells_that_locate_a_fault_load_no_driver_and_excuse_nothing() -> None:
    assert set(ctl.KERNELS) <= set(ctl.NO_DRIVER)
    assert not set(ctl.KERNELS) & set(ctl.UNPATCHED)
    assert set(ctl.KERNELS) <= set(ctl.CELLS) - set(ctl.DEFAULT_CELLS)
    assert all(ctl.POLICY[c] == "none" for c in ctl.KERNELS)


def test_each_cell_boots_the_builds_it_names() -> None:
    assert ctl.builds_of("base-ipi") == ("base", "base")
    assert ctl.builds_of("scx") == ("patched", "patched")
    assert ctl.builds_of("l1-ours") == ("patched", "base")
    assert ctl.builds_of("l2-ours") == ("base", "patched")


def test_the_guest_irq_cells_run_the_base_or_ours_with_the_guests_interrupt_load() -> None:
    assert ctl.builds_of("base-girq") == ("base", "base") and "base-girq" in ctl.UNPATCHED
    assert ctl.builds_of("nopolicy-girq") == ("patched", "patched") and "nopolicy-girq" not in ctl.NO_DRIVER
    assert not set(ctl.GUEST_IRQ) & set(ctl.DEFAULT_CELLS)
    assert "ipi_pingpong" in ctl.BASE_TOOLS


def test_a_run_whose_guests_skipped_their_workload_is_not_a_clean_run(tmp_path: Path) -> None:
    out = _run_dir(tmp_path, "[    1.0] boot\n")
    boot = {"ok": True, "reason": "", "workload": [{"name": "control_workload", "status": "failed"}]}
    row = {"cell": "base-girq", "run": 1, "seconds": 60.0, **ctl.classify(out, "tcg", tmp_path / "System.map", "", {"boots": [boot]})}
    assert ctl.events(row) == {"guest workload not done"}
    boot["workload"][0]["status"] = "passed"  # type: ignore[index]
    row = {"cell": "base-girq", "run": 1, "seconds": 60.0, **ctl.classify(out, "tcg", tmp_path / "System.map", "", {"boots": [boot]})}
    assert ctl.events(row) == set()


def test_a_guest_that_triple_faulted_in_user_mode_is_its_own_row() -> None:
    user = ("guest did not finish (qemu exit status 0; KVM saw a shutdown exit (triple fault): "
            "vCPU 1 shutdown at 0x528293 (_end+0x...)) (console /out/level2-console-control-3.log)")  # fmt: skip
    kernel = ("guest did not finish (qemu exit status 0; KVM saw a shutdown exit (triple fault): "
              "vCPU 0 shutdown at 0xffffffff81ac0179 (io_serial_out+0x73))")  # fmt: skip
    reset = "guest did not finish (qemu exit status 0; KVM saw no shutdown exit (not a triple fault: ...))"
    assert ctl.user_mode_triple_faults(user) == [0x528293]
    assert ctl.user_mode_triple_faults(kernel) == [] and ctl.user_mode_triple_faults(reset) == []
    row = {"signs": [], "splats": [], "lost": "", "boots_failed": [user]}
    assert ctl.events(row) == {"level-2 boot failed (no sign)", "level-2 triple fault in user mode"}
    assert ctl.events({**row, "boots_failed": [kernel]}) == {"level-2 boot failed (no sign)"}


def test_the_spin_cell_replays_the_hostile_parts_guests_on_the_unpatched_kernel() -> None:
    from lab.paths import REPO

    assert ctl.builds_of("base-spin") == ("base", "base") and "base-spin" in ctl.UNPATCHED
    assert "base-spin" in ctl.HOST_LOAD and ctl.POLICY["base-spin"] == "none"
    assert "base-spin" not in ctl.DEFAULT_CELLS and ctl.SPIN_S["base-spin"] > 2
    # Its sibling on our kernels is the hostile part's vanilla round: the driver loaded, no policy.
    assert ctl.builds_of("nopolicy-spin") == ("patched", "patched") and "nopolicy-spin" not in ctl.NO_DRIVER
    assert ctl.SPIN_S["nopolicy-spin"] == ctl.SPIN_S["base-spin"] and "nopolicy-spin" in ctl.HOST_LOAD
    init = (REPO / "lab/invm/guest_init.sh").read_text()
    assert "spin=$(param lab.control_spin)" in init and 'timeout "${spin:-2}"' in init


def test_the_locating_cells_have_spin_twins_that_load_no_driver() -> None:
    for name in ("nodriver", "l1-ours", "l2-ours"):
        twin = f"{name}-spin"
        assert ctl.builds_of(twin) == ctl.builds_of(name) and twin in ctl.NO_DRIVER and twin in ctl.CELLS
        assert ctl.SPIN_S[twin] == ctl.SPIN_S["base-spin"] and twin in ctl.HOST_LOAD and ctl.POLICY[twin] == "none"
        assert twin not in ctl.UNPATCHED and twin not in ctl.DEFAULT_CELLS
    assert len(ctl.CELLS) == len(set(ctl.CELLS))
