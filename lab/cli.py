"""Command line: `python -m lab {doctor,kernel,boot,run}`; nox sessions call these."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from lab import doctor, ui
from lab.emulator_control import CELLS as CONTROL_CELLS
from lab.emulator_control import DEFAULT_CELLS as CONTROL_DEFAULT_CELLS
from lab.errors import LabError
from lab.paths import REPO, RESULTS_DIR, cache_dir
from lab.pipeline import Options, Pipeline, StepFailed
from lab.protocol import BENCH_GUEST_CPUS, BENCH_MODES, BENCH_SCENARIOS, STRESS_HOSTILE_ROUNDS, parse_cap
from lab.runner import Runner, exit_on_signal, stop_all
from lab.suites.kernel import SERIES_VARIANTS
from lab.vm import Level1, vng_command


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="default", help="config profile: default or debug")
    p.add_argument("-j", "--jobs", type=int, default=None, help="make -j (default: all CPUs)")
    p.add_argument("--no-install", action="store_true", help="doctor only reports missing tools")
    p.add_argument("--source-tarball", help="upstream tarball URL or path instead of the lock file's source")
    p.add_argument("--source-sha256", help="sha256 of --source-tarball")
    p.add_argument("--source-git", help="a local kernel git tree instead of the lock file's source")
    p.add_argument("--source-ref", default="HEAD", help="commit/tag/branch of --source-git")
    _runtime(p)


def _runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--container", action="store_true",
                   help="run every command in the lab's toolchain image (built first if missing)")  # fmt: skip
    p.add_argument("--engine", choices=("docker", "podman"), default=os.environ.get("PVSCHED_LAB_ENGINE"),
                   help="container engine for --container (default: the first that works)")  # fmt: skip


def _options(args: argparse.Namespace) -> Options:
    opts = Options(
        profile=args.profile,
        jobs=args.jobs,
        install=not args.no_install,
        source_tarball=args.source_tarball,
        source_sha256=args.source_sha256,
        source_git=args.source_git,
        source_ref=args.source_ref,
        container=args.container,
        engine=args.engine,
    )
    for name in ("guest_cpus", "guest_mem_mb", "reprobe"):
        if getattr(args, name, None) is not None:
            setattr(opts, name, getattr(args, name))
    if getattr(args, "scenario", None) and args.guest_cpus is None:
        opts.guest_cpus = BENCH_GUEST_CPUS[args.scenario]
    if getattr(args, "level1_timeout", None):
        opts.level1.run_timeout = args.level1_timeout
    if getattr(args, "level1_cpu", None):
        opts.level1.tcg_cpu = args.level1_cpu
    if getattr(args, "tcg_threads", None):
        opts.level1.tcg_threads = args.tcg_threads
    if getattr(args, "tcg_tb_size", None):
        opts.level1.tcg_tb_size_mib = args.tcg_tb_size
    if getattr(args, "level1_append", None):
        opts.level1.append = args.level1_append
    if getattr(args, "guest_append", None):
        opts.guest_append = args.guest_append
    if getattr(args, "vm_retries", None) is not None:
        opts.vm_retries = args.vm_retries
    if getattr(args, "no_retry", False):
        opts.vm_retries = 0
    return opts


STRESS_PARTS = ("hostile", "churn", "hotplug", "reload", "kill", "teardown")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _names(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    """A comma-separated list of some of `allowed`, checked before anything is built or booted."""

    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in allowed]
        if not names or unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown or 'empty list'}; choose from {','.join(allowed)}")
        return names

    return parse


def _cap(text: str) -> str:
    """BUDGET_US/PERIOD_US[/VM_BUDGET_US] with 0 < budget <= period and
    0 < VM budget (what KVM's cap can enforce)."""
    shape = f"{text!r} is not BUDGET_US/PERIOD_US[/VM_BUDGET_US], e.g. 3000/100000"
    try:
        budget, period, vm = parse_cap(text)
    except ValueError:
        raise argparse.ArgumentTypeError(shape) from None
    if not 0 < budget <= period:
        raise argparse.ArgumentTypeError(f"budget {budget} us must be above 0 and at most the period {period} us")
    if vm is not None and vm <= 0:
        raise argparse.ArgumentTypeError(f"the VM's budget {vm} us must be above 0")
    return text


def _module_args(text: str) -> str:
    """NAME=VALUE[,NAME=VALUE...] for the guest driver's insmod: it travels on the
    guest's kernel command line, so no spaces or quotes."""
    if not re.fullmatch(r"[a-z_]+=[A-Za-z0-9_]+(,[a-z_]+=[A-Za-z0-9_]+)*", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE[,NAME=VALUE...], e.g. preempt_marks=0")
    return text


def _matrix(text: str) -> dict[str, str]:
    pairs = [p.partition("=") for p in text.split(",") if p.strip()]
    if not pairs or any(not sep or not k.strip() for k, sep, _ in pairs):
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE[,KEY=VALUE]")
    return {k.strip(): v.strip() for k, _, v in pairs}


def _replacement(text: str) -> tuple[str, str]:
    name, sep, command = text.partition("=")
    if not sep or not name.strip() or not command.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not 'STEP NAME=COMMAND'")
    return name.strip(), command


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lab", description="pvsched-lab: build, boot and test paravirtualized vCPU scheduling")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("checkpatch", help="run the kernel's checkpatch.pl on kernel/patches/")
    sub.add_parser("source-check", help="fetch the pinned source from every location the lock file names, and verify each")
    d = sub.add_parser("doctor", help="check (and on Debian/Ubuntu install) every tool a run needs")
    d.add_argument("--no-install", action="store_true")
    k = sub.add_parser("kernel", help="prepare the source and build the kernels")
    _common(k)
    k.add_argument("--check-reproducible", action="store_true", help="build twice without ccache, compare bzImage")
    k.add_argument(
        "--check-series",
        nargs="?",
        const="both",
        choices=("both", *SERIES_VARIANTS),
        default=None,
        help="build after each patch (git rebase --exec): KVM built in and as a module (both), or one of them",
    )
    for name, help_text in (
        ("run", "everything: build, boot both levels, test, report"),
        ("boot", "boot level 1"),
        ("bench", "latency benchmark: six modes in interleaved rounds, medians with intervals"),
        ("stress", "stress suite: hostile guest, VM churn, hotplug, policy reload, VMM killed while boosted"),
        ("emulator-control", "count emulator signs on the unpatched kernel and with each policy, same workload"),
    ):
        r = sub.add_parser(name, help=help_text)
        _common(r)
        r.add_argument("--guest-cpus", type=int, default=2)
        r.add_argument("--guest-mem-mb", type=int, default=256)
        r.add_argument("--reprobe", action="store_true", help="ignore the cached accelerator probe")
        r.add_argument("--level1-timeout", type=float, default=None, help="seconds before level 1 is killed")
        r.add_argument("--level1-cpu", help="QEMU -cpu of level 1 under TCG (default max,-la57; it needs SVM with NPT)")
        r.add_argument("--level1-append", help="extra kernel command line for level 1")
        r.add_argument("--tcg-threads", choices=("multi", "single"), default=None,
                       help="QEMU TCG threading of level 1 when it runs under TCG (default multi)")  # fmt: skip
        r.add_argument("--tcg-tb-size", type=_positive_int, default=None, metavar="MIB",
                       help="QEMU's translation buffer of level 1 under TCG, in MiB (default QEMU's: 1024)")  # fmt: skip
        r.add_argument("--guest-append", help="extra kernel command line for every level-2 guest")
        if name in ("run", "stress"):
            r.add_argument("--vm-retries", type=int, default=None,
                           help="level-1 boots after one lost to a proven emulator fault (default 4; every attempt is "
                                "kept; stress reruns only what is not done)")  # fmt: skip
            r.add_argument("--no-retry", action="store_true", help="never rerun an attempt, whatever the evidence")
        if name == "boot":
            r.add_argument("cmd", nargs=argparse.REMAINDER, help="command to run in level 1 (default: a shell)")
        if name == "bench":
            r.set_defaults(guest_cpus=None)  # the scenario's (BENCH_GUEST_CPUS)
            r.add_argument("--scenario", choices=BENCH_SCENARIOS, default="single",
                           help="single: one RT thread in a 1-vCPU guest; smp: one per vCPU of a 2-vCPU guest; "
                                "tenants: the single guest beside a busy VM of the same size")  # fmt: skip
            r.add_argument("--duration", type=_positive_int, default=12, help="seconds of cyclictest per mode and round")
            r.add_argument("--rounds", type=_positive_int, default=5, help="measured rounds, every mode once per round")
            r.add_argument("--warmup", type=int, default=1, help="rounds run first and discarded")
            r.add_argument("--settle", type=_positive_int, default=5, dest="settle_s",
                           help="seconds the guest waits for level 1 to set up each mode before its window")  # fmt: skip
            r.add_argument("--interval-us", type=_positive_int, default=500, help="cyclictest -i")
            r.add_argument("--hist-us", type=_positive_int, default=100000, help="cyclictest histogram range")
            r.add_argument("--modes", type=_names(BENCH_MODES), default=list(BENCH_MODES), help="comma-separated")
            r.add_argument(
                "--overhead-rounds",
                type=_positive_int,
                default=6,
                help="hackbench pairs with and without the driver, in turns (5+ for an interval)",
            )
            r.add_argument("--overhead-driver-args", type=_module_args, default=None, metavar="NAME=VALUE,...",
                           help="the guest driver's parameters in the overhead runs, e.g. preempt_marks=0")  # fmt: skip
            r.add_argument("--load-workers", type=int, default=1, help="stress-ng workers on the vCPU's host CPU")
    ec = sub.choices["emulator-control"]
    ec.add_argument("--runs", type=_positive_int, default=4, help="level-1 boots per cell (4 x the 8 default cells: about 60 min here)")
    ec.add_argument("--boots", type=_positive_int, default=3, help="level-2 guests per level-1 boot")
    ec.add_argument(
        "--cells",
        type=_names(CONTROL_CELLS),
        default=list(CONTROL_DEFAULT_CELLS),
        help="comma-separated (default: the eight cells up to scx; the others only when named)",
    )
    ec.add_argument("--rescan", type=Path, metavar="RESULTS_DIR",
                    help="count a finished run again with today's signs, from what it kept (no VM)")  # fmt: skip
    st = sub.choices["stress"]
    st.add_argument("--parts", type=_names(STRESS_PARTS), default=list(STRESS_PARTS), help="comma-separated, in order")
    st.add_argument("--churn", type=_positive_int, default=10, help="guest create/destroy rounds")
    st.add_argument("--hotplug", type=_positive_int, default=50, help="cpu1 offline/online rounds while an RT task runs")
    st.add_argument("--reloads", type=_positive_int, default=10, help="boost + sched_ext policy load/unload rounds under load")
    st.add_argument("--kills", type=_positive_int, default=5, help="VMM SIGKILLed while a vCPU thread is boosted")
    st.add_argument("--teardowns", type=_positive_int, default=40, help="tiny VMs killed while a vCPU is boosted or throttled")
    st.add_argument("--hostile-secs", type=_positive_int, default=20, help="seconds of host measurement, vanilla and hostile")
    st.add_argument("--hostile-cap", type=_cap, default=None, metavar="BUDGET_US/PERIOD_US[/VM_BUDGET_US]",
                    help="a vCPU's boost cap, and the VM's budget if given, during the hostile part "
                         "(default: KVM's shipped cap, left as it is)")  # fmt: skip
    st.add_argument("--hostile-rounds", type=_positive_int, default=STRESS_HOSTILE_ROUNDS,
                    help="rounds of vanilla, policy, unboosted and hostile measurements: a ratio passes only when its "
                         "interval clears the bound, so 5 or more (20 s rounds vary 14-60 %% here under TCG; "
                         "an unresolved verdict says how many might resolve it)")  # fmt: skip
    b = sub.add_parser("bisect", help="git bisect run with build + boot + test as the predicate")
    b.add_argument("--good", help="last good ref (default with the lab's tree: the pinned base)")
    b.add_argument("--bad", help="first bad ref (default with the lab's tree: the series head)")
    b.add_argument("--tree", help="a kernel git tree to bisect (default: the lab's patched source tree)")
    b.add_argument("--test", help="bad = this functional test fails (a case name from summary.json)")
    b.add_argument("--bench", help="bad = this bench metric (MODE.SIDE.STAT, e.g. idle.guest.avg_us) exceeds --threshold")
    b.add_argument("--threshold", type=float)
    b.add_argument("--duration", type=int, default=10, help="seconds of cyclictest per --bench step")
    b.add_argument("--retries", type=int, default=1, help="extra attempts before a commit counts as bad")
    b.add_argument("--profile", default="default")
    b.add_argument("--restart", action="store_true", help="discard a previous or interrupted bisect with these arguments")
    _runtime(b)
    i = sub.add_parser("image", help="build the toolchain container image (docker or podman)")
    i.add_argument("--method", default="auto", choices=("auto", "mmdebstrap", "containerfile"),
                   help="auto: mmdebstrap when installed (no registry needed), else the Containerfile")  # fmt: skip
    i.add_argument("--engine", choices=("docker", "podman"), help="default: the first that works")
    i.add_argument("--mirror", help="Debian mirror for mmdebstrap (default: the one this host's apt uses)")
    m = sub.add_parser("mutants", help="plant each defect of tests/mutants/ in a copy of the lab and run the lab on it")
    m.add_argument("--only", action="extend", nargs="+", default=[], metavar="NAME", help="these mutants only (repeatable)")
    m.add_argument("--no-control", action="store_true", help="skip the run of the unmodified tree")
    m.add_argument("lab_args", nargs=argparse.REMAINDER, help="after --: options for each `lab run`")
    mg = sub.add_parser("merge", help="many runs' results as one: junit.xml, summary.md, merged.json")
    mg.add_argument("dirs", nargs="+", type=Path, help="results/<run-id> directories")
    mg.add_argument("-o", "--out", type=Path, default=RESULTS_DIR / "merged", help="where the merged report goes")
    kc = sub.add_parser("kcidb", help="runs as KCIDB I/O JSON (schema v5) for KernelCI's database")
    kc.add_argument("dirs", nargs="+", type=Path, help="results/<run-id> directories")
    kc.add_argument("-o", "--out", type=Path, default=RESULTS_DIR / "kcidb.json")
    w = sub.add_parser("workflow-steps", help="run one job of .github/workflows/lab.yml here, step by step, as a runner would")
    w.add_argument("--job", required=True, help="checks, lab, report or bisect")
    w.add_argument("--matrix", type=_matrix, default={}, help="the leg of a matrix job, e.g. suite=functional,profile=default")
    w.add_argument("--state", type=Path, default=None, help="its cache store, artifacts, workspace and logs (default: in the lab's cache)")
    w.add_argument("--event", default="push", help="github.event_name")
    w.add_argument("--run-attempt", type=_positive_int, default=1)
    w.add_argument("--replace", action="append", type=_replacement, default=[], metavar="'STEP NAME=COMMAND'",
                   help="run COMMAND for that step on this machine (said in the log and the job's table)")  # fmt: skip
    s = sub.add_parser("bisect-step", help="one bisect step (git bisect run calls this)")
    s.add_argument("--state", required=True, help="the bisect's state directory")
    s.add_argument("--commit", help="judge this commit instead of BISECT_HEAD (reproduces a verdict)")
    return p


def boot(args: argparse.Namespace) -> int:
    pipe = Pipeline(_options(args))
    try:
        pipe.doctor()
        builds = pipe.kernels(pipe.source())
        pipe.release_tree()  # level 1 boots the cached bzImage, not the tree
        with pipe.step("probe level 1 accelerator"):
            level1 = Level1(pipe.cache, pipe.runner, builds["host"].bzimage, builds["host"].key, pipe.opts.level1)
            mode, _, _ = level1.probe(use_cache=not args.reprobe)
    except StepFailed:
        return pipe.finish()
    cmd = [c for c in args.cmd if c != "--"]
    if cmd:
        result, _ = level1.run(mode, shlex.join(cmd), [REPO], "boot -- " + " ".join(cmd))
        sys.stdout.write(result.output)
        return result.returncode
    argv = vng_command(level1.vng, builds["host"].bzimage, mode, pipe.opts.level1, None, [REPO])
    ui.info(f"interactive level 1 ({mode}); rerun by hand: {pipe.runner.runtime.reproducer(argv, REPO, None)}")
    return pipe.runner.interactive(argv, "interactive level 1", cwd=REPO)


def checkpatch() -> int:
    """checkpatch.pl from the pinned source on every patch of the series and on the guest driver."""
    from lab.lockfile import load_lock
    from lab.paths import LOCK_FILE, PATCH_DIR, cache_dir
    from lab.source import SourceManager, read_series

    patches = read_series(PATCH_DIR)
    if not patches:
        ui.info("checkpatch: kernel/patches/series is empty, nothing to check")
        return 0
    runner = Runner(RESULTS_DIR / "checkpatch-logs")
    tree, _ = SourceManager(cache_dir(), runner, load_lock(LOCK_FILE)).base_tree()
    result = runner.run(
        ["perl", str(tree / "scripts/checkpatch.pl"), "--no-tree", "--show-types", *map(str, patches)],
        "checkpatch",
        check=False,
    )
    sys.stdout.write(result.output)
    # The guest driver is kernel code too, kept outside the tree.
    driver = runner.run(
        ["perl", str(tree / "scripts/checkpatch.pl"), "--no-tree", "--show-types", "-f", *map(str, sorted((REPO / "guest").glob("*.c")))],
        "checkpatch guest driver",
        check=False,
    )
    sys.stdout.write(driver.output)
    return result.returncode or driver.returncode


def main(argv: list[str] | None = None) -> int:
    """Run a lab command; whatever ends it (Ctrl-C, SIGTERM from a CI
    timeout), no VM or build it started is left running."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, exit_on_signal)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        ui.failure("interrupted:", "stopping the commands still running")
        return 130
    finally:
        if stopped := stop_all():
            ui.info(f"stopped {len(stopped)} command(s) still running (process groups {stopped})")


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    try:
        if args.command == "image":
            from lab.container import build_image, detect

            runner = Runner(RESULTS_DIR / "image-logs")
            tag = build_image(runner, detect(runner, args.engine), args.method, args.mirror)
            print(f"image: {tag}", flush=True)
            return 0
        if args.command == "merge":
            from lab.merge import merge

            merged = merge(args.dirs, args.out)
            print(f"{len(merged['runs'])} runs, {merged['status']}: {args.out}/summary.md, junit.xml")
            return 0 if merged["status"] == "passed" else 1
        if args.command == "kcidb":
            from lab.kcidb import write as write_kcidb

            data = write_kcidb(args.dirs, args.out)
            print(f"{len(data['builds'])} builds, {len(data['tests'])} tests: {args.out}")
            return 0
        if args.command == "workflow-steps":
            from lab import workflow_steps

            state = args.state or cache_dir() / "workflow-steps"
            return workflow_steps.run(args.job, args.matrix, state, args.event, args.run_attempt, dict(args.replace))
        if args.command == "doctor":
            doctor.doctor(_doctor_runner(), install=not args.no_install)
            return 0
        if args.command == "checkpatch":
            return checkpatch()
        if args.command == "source-check":
            from lab.lockfile import load_lock
            from lab.paths import LOCK_FILE
            from lab.source_check import source_check

            return source_check(Runner(RESULTS_DIR / "source-check-logs"), load_lock(LOCK_FILE).source)
        if args.command == "mutants":
            from lab import mutants

            if args.lab_args and args.lab_args[0] != "--":
                # Without the `--`, a word meant as a mutant's name would reach every `lab run`.
                raise LabError(
                    f"mutants: unexpected {' '.join(args.lab_args)!r}",
                    fix="name mutants with --only NAME [NAME ...]; options for each lab run go after --",
                )
            return mutants.run(args.only, [a for a in args.lab_args if a != "--"], control=not args.no_control)
        if args.command == "kernel":
            from lab.suites import kernel as kernel_suite

            return kernel_suite.run(Pipeline(_options(args)), args.check_reproducible, args.check_series)
        if args.command == "boot":
            return boot(args)
        if args.command in ("bisect", "bisect-step"):
            from pathlib import Path

            from lab.bisect_step import run_bisect, run_step
            from lab.bisector import Criterion

            if args.command == "bisect-step":
                return run_step(Path(args.state), args.commit)
            crit = Criterion(args.test, args.bench, args.threshold, args.duration)
            return run_bisect(args.good, args.bad, args.tree, crit, args.retries, args.profile, args.restart, args.container, args.engine)
        if args.command == "bench":
            opts = {
                "duration": args.duration,
                "rounds": args.rounds,
                "warmup": args.warmup,
                "settle_s": args.settle_s,
                "interval_us": args.interval_us,
                "hist_us": args.hist_us,
                "modes": args.modes,
                "overhead_rounds": args.overhead_rounds,
                "overhead_driver_args": args.overhead_driver_args or "",
                "load_workers": args.load_workers,
                "scenario": args.scenario,
            }
            from lab.suites import bench as bench_suite

            options = _options(args)
            if args.level1_timeout is None:
                options.level1.run_timeout = max(options.level1.run_timeout, bench_suite.level1_seconds(opts))
            return bench_suite.run(Pipeline(options), opts)
        if args.command == "emulator-control":
            from lab.emulator_control import ControlRun

            if args.rescan:
                from lab.emulator_control import rescan

                print(rescan(args.rescan, cache_dir() / "kernels", Runner(args.rescan / "logs-rescan")), end="")
                return 0

            return ControlRun(_options(args), args.cells, args.runs, args.boots).run()
        if args.command == "stress":
            opts = {
                "parts": args.parts,
                "churn": args.churn,
                "hotplug": args.hotplug,
                "reloads": args.reloads,
                "kills": args.kills,
                "teardowns": args.teardowns,
                "hostile_secs": args.hostile_secs,
                "hostile_cap": args.hostile_cap,
                "hostile_rounds": args.hostile_rounds,
            }
            options = _options(args)
            if args.level1_timeout is None:
                options.level1.run_timeout = max(options.level1.run_timeout, 2400.0)
            from lab.suites import stress as stress_suite

            return stress_suite.run(Pipeline(options), opts)
        from lab.suites import functional

        return functional.run(Pipeline(_options(args)))
    except LabError as exc:
        ui.failure("error:", str(exc))
        return 2


def _doctor_runner() -> Runner:
    from lab.paths import RESULTS_DIR
    from lab.runner import Runner

    return Runner(RESULTS_DIR / "doctor-logs")
