"""`nox -s emulator_control` inside level 1: the same nested workload, a few
level-2 boots in a row, with one policy attached or none.

Stdlib only, like level1.py. It decides nothing about the emulator: it
records each boot's outcome and the kernel log, and the host counts the
signs (lab.emulator_control).
"""

from __future__ import annotations

import json
import time

from lab.errors import LabError
from lab.invm import level1, level2, pvsched_host
from lab.invm.host_load import HostLoad
from lab.invm.ipi_storm import IpiStorm
from lab.invm.rt_flip import RtFlip
from lab.invm.scx_example import ScxExample
from lab.ktap import parse_ktap
from lab.protocol import LEVEL1_DONE
from lab.runner import Runner

POLICIES = ("none", "boost", "scx", "scx-simple")


def main(config_path: str) -> int:
    cfg, out = level1.begin(config_path)
    stop_watchdog = level1.start_watchdog(cfg)
    control: dict[str, object] = cfg["control"]  # type: ignore[assignment]
    policy_name, boots = str(control["policy"]), int(str(control["boots"]))
    pv = cfg.get("pvsched")
    runner = Runner(out / "logs-level1")
    policy: pvsched_host.PolicyRun | ScxExample | None = None
    policy_error = ""
    if policy_name == "scx-simple":
        # The kernel's own example: runs on the unpatched kernel too.
        policy = ScxExample(runner, str(cfg["scx_simple"]))
        policy_error = policy.start()
    elif policy_name != "none":
        if not isinstance(pv, dict):
            raise LabError(f"policy {policy_name} needs the pvsched kernel")
        loader = pv["loader"] if policy_name == "boost" else pv["scx_loader"]
        policy = pvsched_host.PolicyRun(runner, str(loader), out / f"pvsched-{policy_name}-stats.json")
        policy_error = policy.start()
    driver = "1" if isinstance(pv, dict) else "0"
    irq = "1" if control.get("guest_irq") else "0"
    spin = int(str(control.get("guest_spin_s", 2)))
    storm = IpiStorm((0, 1), out / "ipi-storm-trips.txt") if control.get("ipi_storm") else None
    if storm is not None:
        storm.start()
    flipper = RtFlip(out / "rt-flips.txt") if control.get("rt_flip") else None
    if flipper is not None:
        flipper.start()
    load = HostLoad(runner) if control.get("host_load") else None
    if load is not None:
        load.start()
    results = []
    for i in range(boots):
        start = time.monotonic()
        probe, console = level2.boot_guest(
            runner,
            cfg,
            "kvm",
            out,
            label=f"control-{i}",
            extra_append=f"lab.mode=control lab.control_driver={driver} lab.control_irq={irq} lab.control_spin={spin}",
            walk_resets=True,  # as the stress suite's guests: a triple fault's walk beside the patched one's
        )
        cases = parse_ktap(console, "level2")
        results.append({
            "boot": i,
            "ok": probe.ok,
            "reason": probe.reason,
            "seconds": round(time.monotonic() - start, 2),
            "workload": [c.to_dict() for c in cases],
        })  # fmt: skip
        print(f"control boot {i}: {'ok' if probe.ok else probe.reason}", flush=True)
    trips = storm.stop() if storm is not None else None
    flips = flipper.stop() if flipper is not None else None
    load_ran = load.stop() if load is not None else None
    if policy is not None:
        policy.stop()  # a policy that does not detach shows in the kernel log and the signs
    dmesg = runner.run(["dmesg"], "dmesg").output
    (out / "level1-dmesg.txt").write_text(dmesg)
    report = {"policy": policy_name, "policy_error": policy_error, "driver": driver == "1",
              "ipi_storm_trips": trips, "rt_flips": flips, "host_load_ran": load_ran, "boots": results}  # fmt: skip
    (out / "control.json").write_text(json.dumps(report, indent=2) + "\n")
    print(LEVEL1_DONE, flush=True)
    stop_watchdog.set()
    return 0


if __name__ == "__main__":
    level1.run_as_script(main, "control")
