"""The test runner inside level 1 (the host-kernel VM), started by `vng --exec`.

Stdlib only: it runs on the host's Python over virtme-ng's shared root.  It
checks level 1 (KVM device, BPF toolchain), boots the level-2 guest under
the best accelerator that works (trying KVM first), collects the guest's KTAP
results and console, and writes everything to <out>/level1.json for the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from lab import accel
from lab.errors import LabError
from lab.ktap import Case, parse_ktap, planned_count
from lab.runner import Runner

READY = "LAB-GUEST-READY"
DONE = "LAB-GUEST-DONE"


def qemu_command(cfg: dict[str, object], mode: str) -> list[str]:
    cpus, mem = int(cfg["guest_cpus"]), int(cfg["guest_mem_mb"])  # type: ignore[call-overload]
    append = f"console=ttyS0 loglevel=4 panic=-1 lab.cpus={cpus} lab.mem_mb={mem}"
    cpu = "host" if mode == "kvm" else "max"
    return [
        str(cfg["qemu"]), "-accel", mode, "-cpu", cpu, "-smp", str(cpus), "-m", f"{mem}M",
        "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
        "-kernel", str(cfg["guest_kernel"]), "-initrd", str(cfg["guest_initramfs"]), "-append", append,
    ]  # fmt: skip


def boot_guest(runner: Runner, cfg: dict[str, object], mode: str, out: Path) -> tuple[accel.Probe, str]:
    """One level-2 boot; the probe is 'ok' when the guest reached its tests and finished."""
    start = time.monotonic()
    ready_at: list[float] = []

    def watch(line: str) -> None:
        if READY in line and not ready_at:
            ready_at.append(time.monotonic() - start)

    timeout = accel.probe_timeout(mode, float(cfg["kvm_timeout"]), float(cfg["tcg_timeout"]))  # type: ignore[arg-type]
    result = runner.run(qemu_command(cfg, mode), f"level2 boot ({mode})", timeout=timeout, check=False, on_line=watch)
    console = result.output
    (out / f"level2-console-{mode}.log").write_text(console)
    if result.timed_out:
        reason = f"timed out after {timeout:.0f} s"
    elif "Kernel panic" in console:
        reason = "guest kernel panicked"
    elif DONE not in console:
        reason = f"guest did not finish (qemu exit status {result.returncode})"
    else:
        reason = ""
    seconds = ready_at[0] if ready_at else result.seconds
    return accel.Probe(mode, not reason, round(seconds, 2), reason), console


def check_bpf(runner: Runner, cfg: dict[str, object]) -> Case:
    loader = str(cfg["bpf_hello"])
    start = time.monotonic()
    result = runner.run([loader], "bpf hello loader", check=False, timeout=120)
    took = round(time.monotonic() - start, 2)
    if result.ok:
        return Case("bpf_program_loads", "level1", "passed", result.output.strip(), took)
    return Case("bpf_program_loads", "level1", "failed", f"{result.output.strip()[-300:]} (log {result.log.name})", took)


def guest_dmesg(console: str) -> str:
    begin, end = "LAB-GUEST-DMESG-BEGIN", "LAB-GUEST-DMESG-END"
    if begin in console and end in console:
        return console.split(begin, 1)[1].split(end, 1)[0]
    return console  # the guest died before dumping it: scan what it printed


def main(config_path: str) -> int:
    cfg: dict[str, object] = json.loads(Path(config_path).read_text())
    out = Path(str(cfg["out"]))
    out.mkdir(parents=True, exist_ok=True)
    print(f"LAB-LEVEL1-READY {Path('/proc/uptime').read_text().split()[0]}", flush=True)
    runner = Runner(out / "logs-level1")
    cases: list[Case] = []

    has_kvm = os.path.exists("/dev/kvm")
    kvm_ok, why_not = accel.kvm_worth_trying(has_kvm, has_kvm and os.access("/dev/kvm", os.R_OK | os.W_OK))
    cases.append(Case("level1_has_kvm", "level1", "passed" if kvm_ok else "failed", why_not))
    cases.append(check_bpf(runner, cfg))

    probes: list[accel.Probe] = []
    console = ""
    modes = ["kvm", "tcg"] if kvm_ok else ["tcg"]
    for mode in modes:
        probe, console = boot_guest(runner, cfg, mode, out)
        probes.append(probe)
        print(f"level2 {mode}: {'booted' if probe.ok else probe.reason} in {probe.seconds} s", flush=True)
        if probe.ok:
            break
    chosen = accel.choose(probes)
    booted = chosen is not None
    cases.append(
        Case("level2_boots", "level1", "passed" if booted else "failed",
             "" if booted else "; ".join(f"{p.accel}: {p.reason}" for p in probes))
    )  # fmt: skip
    guest_cases = parse_ktap(console, "level2") if booted else []
    planned = planned_count(console)
    if booted and planned is not None and planned != len(guest_cases):
        cases.append(Case("level2_all_tests_reported", "level2", "failed", f"planned {planned}, got {len(guest_cases)}"))
    cases.extend(guest_cases)
    (out / "level2-dmesg.txt").write_text(guest_dmesg(console))
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    (out / "level1-dmesg.txt").write_text(dmesg)
    chosen_probe = next((p for p in probes if p.accel == chosen), None)
    report = {
        "level2": {
            "accel": chosen,
            "boot_seconds": chosen_probe.seconds if chosen_probe else None,
            "probes": [p.to_dict() for p in probes],
        },
        "tests": [c.to_dict() for c in cases],
    }
    (out / "level1.json").write_text(json.dumps(report, indent=2) + "\n")
    print("LAB-LEVEL1-DONE", flush=True)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1]))
    except LabError as exc:
        print(f"level1: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
