"""The test runner inside level 1 (the host-kernel VM), started by `vng --exec`.

Stdlib only: it runs on the host's Python over virtme-ng's shared root.  It
checks level 1 (KVM device, BPF toolchain), boots the level-2 guest under
the best accelerator that works (trying KVM first), collects the guest's KTAP
results and console, and writes everything to <out>/level1.json for the host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lab import accel
from lab.errors import LabError
from lab.exit_record import record_name
from lab.invm import boosted_teardown, marks, pi_boost, pvsched_host, pvsched_switch, pvsched_verdicts, vcpu_churn, watchdog
from lab.invm.level2 import (
    PANIC,
    READY,
    arm_shutdown_trace,
    boot_guest,
    console_ref,
    guest_dmesg,
    qemu_command,
    sample_exits,
    shutdown_witness,
)
from lab.ktap import Case, parse_ktap, planned_count
from lab.protocol import GUEST_DONE, LEVEL1_DONE, LEVEL1_READY
from lab.runner import Background, Runner


class Verdicts(list[Case]):
    """The cases of a level-1 run; a failed one is marked in the kernel log as
    it is added, so the host can order it among the kernel's messages."""

    def append(self, case: Case) -> None:
        if case.status == "failed":
            marks.failed(case.level, case.name)
        super().append(case)

    def extend(self, cases: Iterable[Case]) -> None:
        for case in cases:
            self.append(case)


def check_bpf(runner: Runner, cfg: dict[str, object]) -> Case:
    loader = str(cfg["bpf_hello"])
    start = time.monotonic()
    result = runner.run([loader], "bpf hello loader", check=False, timeout=120)
    took = round(time.monotonic() - start, 2)
    if result.ok:
        return Case("bpf_program_loads", "level1", "passed", result.output.strip(), took)
    return Case("bpf_program_loads", "level1", "failed", f"{result.output.strip()[-300:]} (log {result.log.name})", took)


def unprivileged_vmm(runner: Runner, cfg: dict[str, object], out: Path) -> tuple[Case, str]:
    """A VMM without CAP_SYS_NICE: the guest's registration must be refused."""
    tmp = Path("/tmp/lab-unpriv")
    tmp.mkdir(exist_ok=True)
    local = dict(cfg)
    for key in ("guest_kernel", "guest_initramfs"):  # /root is not readable by nobody
        dest = tmp / Path(str(cfg[key])).name
        shutil.copyfile(str(cfg[key]), dest)
        dest.chmod(0o644)
        local[key] = str(dest)
    os.chmod("/dev/kvm", 0o666)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe, console = boot_guest(runner, local, "kvm", out, label="unprivileged", extra_append="lab.mode=unpriv", prefix=nobody)
    cases = parse_ktap(console, "level2")
    if not probe.ok or not cases:
        return Case("pvsched_unprivileged_vmm_cannot_register", "level2", "failed", probe.reason or "no result"), console
    return cases[0], console


REBOOT_LINE = re.compile(r"LAB-REBOOT-BOOT stale=(\d+) registered=(\d+)")


def watch_guest(runner: Runner, guest: Background, cfg: dict[str, object], label: str, out: Path, done: Callable[[str], bool]) -> str:
    """Wait up to two boots' bound for `done(console)` or the guest's end. A
    guest silent for half a boot's bound has stopped: what KVM sees of it is
    sampled then, while level 1 still can (it may not live to the deadline),
    else at the deadline. Returns what the sample said ('' if none was taken)."""
    timeout = float(cfg["kvm_timeout"])  # type: ignore[arg-type]
    deadline = time.monotonic() + 2 * timeout
    heard, heard_at, stuck, sampled = len(guest.output), time.monotonic(), "", False
    while not done(guest.output) and guest.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        if len(guest.output) != heard:
            heard, heard_at = len(guest.output), time.monotonic()
        elif not sampled and time.monotonic() - heard_at > timeout / 2:
            stuck, sampled = sample_exits(runner, guest.pid, cfg, out / record_name(label)), True
    if not done(guest.output) and guest.poll() is None and not sampled:
        stuck = sample_exits(runner, guest.pid, cfg, out / record_name(label))
    return stuck


def reboot_case(runner: Runner, cfg: dict[str, object], out: Path) -> tuple[Case, str]:
    """A guest that reboots leaves no registration for its next kernel: the
    guest boots, registers and reboots (QEMU keeps running); its second boot
    must find no area left registered (the driver's reboot notifier; QEMU
    does not reset an MSR it does not know, so KVM alone would keep the
    first kernel's areas, and write them)."""
    name = "pvsched_reboot_unregisters"
    console_log = out / "level2-console-reboot.log"
    marks.level2_begins(console_log.name)
    guest = runner.start(qemu_command(cfg, "kvm", "lab.mode=reboot", reboot=True), "level2 reboot", tee=console_log)
    stuck = watch_guest(runner, guest, cfg, "reboot", out, lambda console: console.count("LAB-REBOOT-BOOT") >= 2)
    guest.stop(signal.SIGKILL, grace=30)
    console = guest.output
    boots = [(int(m[1]), int(m[2])) for m in REBOOT_LINE.finditer(console)]
    if len(boots) < 2:
        why = f"the guest did not register on two boots ({boots}): no data" + (f"; {stuck}" if stuck else "")
        return Case(name, "level2", "failed", why), console
    want = int(cfg["guest_cpus"])  # type: ignore[call-overload]
    (stale1, reg1), (stale2, reg2) = boots[0], boots[1]
    ok = stale1 == 0 and stale2 == 0 and reg1 == reg2 == want
    why = f"boot 1: {stale1} stale, {reg1} registered; boot 2 (after the reboot): {stale2} stale, {reg2} registered (of {want})"
    return Case(name, "level2", "passed" if ok else "failed", why), console


KEXEC_LINE = re.compile(r"LAB-KEXEC-BOOT (\d) stale=(\d+) registered=(\d+)")
KEXEC_CHECK = "pvsched_kexec_unregisters"
# The second kernel powers off within this long of its DONE, or is stopped.
KEXEC_POWER_OFF_S = 30.0
KEXEC_REAP_S = 5.0  # a QEMU whose console ended before DONE: how long its exit may take to be seen


def kexec_verdict(console: str, want: int, powered_off: bool, stuck: str = "") -> Case:
    """Both kernels registered every vCPU, and the second found none of the
    first's registrations in place: the guest driver unregistered from its
    reboot notifier, which kexec runs; no reset told KVM (vCPU 0 is never
    sent INIT by the second kernel), so nothing else would have."""
    boots = {int(m[1]): (int(m[2]), int(m[3])) for m in KEXEC_LINE.finditer(console)}
    if set(boots) != {1, 2}:
        why = f"boots reported: {sorted(boots) or 'none'}"
        if "LAB-KEXEC-FAILED" in console:
            why += "; the first kernel's kexec failed"
        elif GUEST_DONE not in console:
            why += "; the guest never finished"
        return Case(KEXEC_CHECK, "level2", "failed", f"{why}: no data" + (f"; {stuck}" if stuck else ""))
    (stale1, reg1), (stale2, reg2) = boots[1], boots[2]
    ok = stale1 == 0 and stale2 == 0 and reg1 == reg2 == want and GUEST_DONE in console and powered_off
    why = f"kernel 1: {stale1} stale, {reg1} registered; kernel 2 (after kexec): {stale2} stale, {reg2} registered (of {want})"
    if GUEST_DONE not in console:
        why += "; kernel 2 never finished"
    elif not powered_off:
        why += f"; kernel 2 did not power off within {KEXEC_POWER_OFF_S:.0f} s of finishing (stopped)"
    return Case(KEXEC_CHECK, "level2", "passed" if ok else "failed", why + (f"; {stuck}" if stuck else ""))


def kexec_case(runner: Runner, cfg: dict[str, object], out: Path) -> tuple[Case, str]:
    """A registered guest kexecs into the same kernel and initramfs (given
    to it as two read-only disks); the second kernel reports what it found."""
    console_log = out / "level2-console-kexec.log"
    marks.level2_begins(console_log.name)
    drives = (Path(str(cfg["guest_kernel"])), Path(str(cfg["guest_initramfs"])))
    # A second kernel that dies in its boot ends QEMU with status 0: KVM's trace says whether it triple-faulted.
    trace = arm_shutdown_trace(runner) if cfg.get("trace_shutdowns") else None
    guest = runner.start(qemu_command(cfg, "kvm", "lab.mode=kexec", drives=drives), "level2 kexec", tee=console_log)
    # What its vCPUs do in KVM if it falls silent (kept for lab.emulator_faults).
    sampled = watch_guest(runner, guest, cfg, "kexec", out, lambda console: GUEST_DONE in console)
    finished = guest.seen(GUEST_DONE)
    powered_off = guest.wait(KEXEC_POWER_OFF_S if finished else KEXEC_REAP_S) is not None
    if powered_off:
        stuck = "" if finished else f"QEMU exit {guest.poll()}; {shutdown_witness(trace, cfg)}"
        if stuck:
            # The witness in level 1's console, with its guest's console, as a
            # boot_guest's: where the host looks for the sign it may be.
            print(f"level2 kexec: kernel 2 did not finish ({stuck}){console_ref(console_log)}", flush=True)
    else:
        # The sample taken at its silence, if it never finished; else what it does now.
        stuck = sampled if sampled and not finished else sample_exits(runner, guest.pid, cfg, out / record_name("kexec"))
        guest.stop(signal.SIGKILL, grace=30)
    console = guest.output
    return kexec_verdict(console, int(cfg["guest_cpus"]), powered_off, stuck), console  # type: ignore[call-overload]


def scx_policy(runner: Runner, cfg: dict[str, object], out: Path, loader: str) -> tuple[list[Case], str]:
    """The sched_ext policy loads, runs a guest with an RT task, and unloads cleanly."""
    policy = pvsched_host.PolicyRun(runner, loader, out / "pvsched-scx-stats.json")
    error = policy.start()
    state = pvsched_host.scx_state()
    cases = Verdicts()
    cases.append(Case("pvsched_scx_loads", "level1", "passed" if not error and state == "enabled" else "failed",
                      f"{error} sched_ext state {state}".strip()))  # fmt: skip
    console = ""
    if not error:
        # No host load here: this checks function (the policy sees the RT
        # vCPU and enqueues it ahead), and under load level 1 once wedged in
        # this phase (a CPU deaf even to NMIs). The level-1 oops seen in this
        # phase (README, stress) also came without load. `nox -s bench` (scx
        # mode) and `nox -s stress` (reloads) keep scx under load exercised.
        probe, console = boot_guest(runner, cfg, "kvm", out, label="scx", extra_append="lab.mode=scx")
        cases.extend(parse_ktap(console, "level2") or [Case("pvsched_scx_guest_runs", "level2", "failed", probe.reason)])
        seen = sum(v.get("rt_seen", 0) for v in policy.vcpus())
        prioritized = sum(v.get("boost_requests", 0) for v in policy.vcpus())
        cases.append(Case("pvsched_scx_prioritizes_rt_vcpu", "level1", "passed" if seen and prioritized else "failed",
                          f"rt_seen={seen}, prioritized enqueues={prioritized}"))  # fmt: skip
    policy.stop()
    state = pvsched_host.await_scx_state(("disabled",), 10)
    cases.append(Case("pvsched_scx_unloads", "level1", "passed" if state == "disabled" else "failed", f"state {state}"))
    return cases, console


def destroy_case(observer: pvsched_host.PvschedObserver) -> Case:
    """The guest powered off with its areas registered (guest_init.sh): after
    its VM is destroyed KVM must list none. Needs both readings: the areas
    while the guest ran (the last phase's snapshot) and KVM's list after."""
    name = "pvsched_vm_destroy_unregisters"
    before = observer.snapshots.get("detach")
    if not before:
        return Case(name, "level1", "failed", f"no area registered in KVM's snapshot at the guest's last phase: {before}")
    try:
        left = pvsched_host.read_kvm_vcpus()
    except pvsched_host.DebugfsUnreadable as exc:
        return Case(name, "level1", "failed", str(exc))
    why = f"{len(before)} areas registered before the VM was destroyed, {len(left)} after: {left}"
    return Case(name, "level1", "failed" if left else "passed", why)


def begin(config_path: str) -> tuple[dict[str, object], Path]:
    """What every level-1 runner does first: read its config, make its output
    directory, tell the host it is ready."""
    cfg: dict[str, object] = json.loads(Path(config_path).read_text())
    out = Path(str(cfg["out"]))
    out.mkdir(parents=True, exist_ok=True)
    print(f"{LEVEL1_READY} {Path('/proc/uptime').read_text().split()[0]}", flush=True)
    return cfg, out


def start_watchdog(cfg: dict[str, object]) -> threading.Event:
    return watchdog.start(float(str(cfg.get("watchdog_s", 240))))


def run_as_script(main: Callable[[str], int], name: str) -> None:
    """`python -m <runner> CONFIG`: a LabError is one line on stderr and exit 1."""
    try:
        raise SystemExit(main(sys.argv[1]))
    except LabError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc


def main(config_path: str) -> int:
    cfg, out = begin(config_path)
    # If this runner ever blocks, its console shows where (a CI run here sat
    # for 25 minutes and left nothing else to go on).
    stop_watchdog = start_watchdog(cfg)
    pvsched_host.observe_above_boosts()
    runner = Runner(out / "logs-level1")
    cases = Verdicts()

    has_kvm = os.path.exists("/dev/kvm")
    kvm_ok, why_not = accel.kvm_worth_trying(has_kvm, has_kvm and os.access("/dev/kvm", os.R_OK | os.W_OK))
    cases.append(Case("level1_has_kvm", "level1", "passed" if kvm_ok else "failed", why_not))
    cases.append(check_bpf(runner, cfg))

    pv_raw = cfg.get("pvsched")
    pv: dict[str, Any] | None = pv_raw if isinstance(pv_raw, dict) else None
    observer = None
    extra_dmesg = ""
    if pv is not None and kvm_ok:
        cases.extend(pvsched_host.static_checks(runner, pv["loader"], pv["load_check"], pv["rejected"]))
        # The sampler reads the statistics in memory (PolicyRun.live): 9p
        # reads can sleep uninterruptibly, and the sampler has to die on time.
        policy = pvsched_host.PolicyRun(runner, pv["loader"], out / "pvsched-boost-stats.json")
        error = policy.start()
        cases.append(Case("pvsched_policy_attaches", "level1", "failed" if error else "passed", error))
        observer = pvsched_host.PvschedObserver(policy, Path("/tmp/lab-qmp.sock"))
        observer.start_sampler()

    probes: list[accel.Probe] = []
    console = ""
    modes = ["kvm", "tcg"] if kvm_ok else ["tcg"]
    for mode in modes:
        use = observer if mode == "kvm" else None
        # A triple fault's page walk, as the stress suite's guests have (idt-unreadable, 2026-12-06: three in this guest).
        probe, console = boot_guest(runner, cfg, mode, out, qmp=use.qmp if use else None, watch=use.on_line if use else None,
                                    walk_resets=True)  # fmt: skip
        probes.append(probe)
        print(f"level2 {mode}: {'booted' if probe.ok else probe.reason} in {probe.seconds} s", flush=True)
        if probe.ok or READY in console or PANIC in console:
            # A guest that reached its tests under KVM proved KVM works; if it
            # died later (nested KVM on TCG resets a guest now and then), TCG
            # would only redo minutes of work without pvsched: report it. A
            # guest kernel that panicked ran under KVM too: TCG would only
            # repeat the panic, minutes later here.
            break
    # Judged (and marked in the kernel log) now, before the next guest starts:
    # what explains its failure is this guest's (lab.attempts).
    chosen = accel.choose(probes)
    booted = chosen is not None
    cases.append(
        Case("level2_boots", "level1", "passed" if booted else "failed",
             "" if booted else "; ".join(f"{p.accel}: {p.reason}" for p in probes))
    )  # fmt: skip
    # A guest that printed verdicts and then died keeps them: the failure
    # that killed it is reported beside them (level2_boots, the splats).
    guest_cases = parse_ktap(console, "level2")
    planned = planned_count(console)
    if booted and planned is not None and planned != len(guest_cases):
        cases.append(Case("level2_all_tests_reported", "level2", "failed", f"planned {planned}, got {len(guest_cases)}"))
    if observer is not None and pv is not None:
        observer.finish()  # stops the policy: its statistics land in `out`
        # What the checks judged: every sample, and when each phase was seen.
        (out / "pvsched-samples.json").write_text(json.dumps({
            "phase_times": observer.phase_times,
            "threads": observer.threads,
            "samples": [{"t": smp.t, "phase": smp.phase, "policies": smp.policies, "priorities": smp.priorities}
                        for smp in observer.samples],
            # The policy's statistics as the checks read them between phases.
            "policy_samples": [{"t": t, "vcpus": vcpus} for t, vcpus in observer.policy_samples],
        }))  # fmt: skip
        cases.extend(pvsched_verdicts.judge(observer))
        cases.append(destroy_case(observer))
        unpriv_case, unpriv_console = unprivileged_vmm(runner, cfg, out)
        cases.append(unpriv_case)
        reboot, reboot_console = reboot_case(runner, cfg, out)
        cases.append(reboot)
        kexec, kexec_console = kexec_case(runner, cfg, out)
        cases.append(kexec)
        scx_cases, scx_console = scx_policy(runner, cfg, out, str(pv["scx_loader"]))
        cases.extend(scx_cases)
        cases.append(vcpu_churn.churn_case(runner, str(pv["loader"]), out))
        cases.append(boosted_teardown.destroy_case(runner, str(pv["loader"]), out))
        cases.append(pi_boost.pi_case(runner, str(pv["loader"]), out))
        cases.extend(pvsched_switch.cases(runner))
        extra_dmesg = "".join(guest_dmesg(c) for c in (unpriv_console, scx_console, reboot_console, kexec_console))
    cases.extend(guest_cases)
    (out / "level2-dmesg.txt").write_text(guest_dmesg(console) + extra_dmesg)
    dmesg = runner.run(["dmesg"], "dmesg", check=False).output
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
    print(LEVEL1_DONE, flush=True)
    stop_watchdog.set()
    threads_left = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.daemon is False]
    if threads_left:
        print(f"level1: threads still running at exit: {threads_left}", flush=True)
    return 0


if __name__ == "__main__":
    run_as_script(main, "level1")
