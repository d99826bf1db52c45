"""The lab's steps, in order: doctor -> source -> config -> build -> BPF -> initramfs
-> probe -> boot level 1 (which boots level 2) -> scan -> results.

Each step runs inside `Pipeline.step`, which records which step failed and
where its log is, so the last lines of a failed run say exactly that. The
suites (lab/suites/: functional, bench, stress, kernel) run after the
shared steps through `Pipeline.run_suite`; the record of an attempt (kept,
judged, excused) is here, the rules of judging in lab.attempts.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.markup import escape

from lab import attempts as attempts_lib
from lab import doctor, emulator_faults, exit_returns, hostinfo, kconfig, landmarks, profiles, ui
from lab.bpf import build_bpf
from lab.build import KernelBuild, KernelBuilder
from lab.errors import LabError
from lab.guest import build_guest
from lab.initramfs import build_initramfs, with_libraries
from lab.ktap import Case
from lab.lockfile import Lock, SourceLock, load_lock
from lab.paths import CONFIG_DIR, LOCK_FILE, PATCH_DIR, RESULTS_DIR, cache_dir
from lab.results import RunRecord, write_results
from lab.runner import Runner
from lab.runtime import NativeRuntime
from lab.source import SourceManager, SourceTree
from lab.splats import Splat, scan, scan_guest_console
from lab.vm import SILENCE_KILL_S, Level1, Level1Settings, python_exec


@dataclass
class Options:
    profile: str = "default"
    jobs: int | None = None
    install: bool = True
    source_tarball: str | None = None
    source_sha256: str | None = None
    source_git: str | None = None
    source_ref: str = "HEAD"
    guest_cpus: int = 2
    guest_mem_mb: int = 256
    reprobe: bool = False
    level1: Level1Settings = field(default_factory=Level1Settings)
    guest_append: str = ""
    level2_kvm_timeout: float = 120.0
    level2_tcg_timeout: float = 600.0
    vm_retries: int = 4  # nested KVM on an emulated CPU loses a level-1 boot now and then (README)
    series: bool = True  # apply kernel/patches/ (bisect steps build commits as they are)
    # Options of the fragments the kernel being built cannot have (the series' own, for the unpatched base).
    drop_options: tuple[str, ...] = ()
    build_tag: str | None = None  # names the incremental build directory; default: the profile
    tree_name: str | None = None  # names the source tree directory; default: one per source
    # (clone, ref): build that commit of a clone of the lab's own tree as it is (bisect)
    lab_tree_commit: tuple[str, str] | None = None
    container: bool = False  # every command in the toolchain image (lab.runtime)
    engine: str | None = None  # docker or podman; default: the first that works

    def __post_init__(self) -> None:
        # The profile's VM timeouts, whoever builds the Options (the CLI, a bisect step).
        factor = profiles.get(self.profile).timeout_factor
        self.level2_kvm_timeout *= factor
        self.level2_tcg_timeout *= factor
        self.level1 = replace(self.level1, run_timeout=self.level1.run_timeout * factor,
                              tcg_probe_timeout=self.level1.tcg_probe_timeout * factor)  # fmt: skip


class StepFailed(Exception):
    pass


def effective_lock(opts: Options) -> Lock:
    lock = load_lock(LOCK_FILE)
    if opts.source_git:
        src = SourceLock(kind="git", version=f"git:{opts.source_ref}", git=opts.source_git, ref=opts.source_ref)
        return replace(lock, source=src)
    if opts.source_tarball:
        if not opts.source_sha256:
            raise LabError("--source-tarball needs --source-sha256", fix="pass the tarball's sha256 (sha256sum FILE)")
        name = Path(opts.source_tarball).name
        version = name.removeprefix("linux-").split(".tar")[0]
        src = SourceLock(kind="tarball", version=version, sha256=opts.source_sha256.lower(), url=opts.source_tarball)
        return replace(lock, source=src)
    return lock


def _printk_seconds(line: str) -> float | None:
    """The timestamp of a kernel log line ("[  137.283898] ..."), or None."""
    m = re.match(r"\s*\[\s*(\d+\.\d+)\]", line)
    return float(m[1]) if m else None


COARSE_CLOCK_S = 0.02  # at least one tick at HZ=100

# BPF objects the verifier must refuse (bpf/Makefile's REJECTED): a pvsched
# callback outside the allowlist, a tracing program, a sched_ext scheduler.
REJECTED_BPF = ("pvsched_bad_register", "pvsched_bad_tracing", "pvsched_bad_scx")


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def console_tail(output: str, lines: int = 80) -> str:
    """The last `lines` non-blank lines of a console, indented, for an error message."""
    kept = [line.rstrip() for line in output.splitlines() if line.strip()][-lines:]
    return "\n".join(f"    | {line}" for line in kept) or "    (level 1 printed nothing)"


class Pipeline:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.cache = cache_dir()
        self.run_dir = RESULTS_DIR / new_run_id()
        self.runner = Runner(self.run_dir / "logs")
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.record = RunRecord(run_id=self.run_dir.name, started=now, profile=opts.profile, runtime=self.runner.runtime.metadata())
        ui.info(f"run {self.record.run_id}: results in {self.run_dir}")
        self.source_manager: SourceManager | None = None
        self.system_map: Path | None = None  # the host kernel's, once built: emulator signs need it
        # Held from the kernel builds until the last build from the tree (lab.source).
        self.tree_hold = ExitStack()
        self.current_step = "start"

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.current_step = name
        try:
            yield
        except LabError as exc:
            self.record.failed_step = {"step": name, "message": exc.message, "log": exc.log or str(self.runner.log_dir)}
            if exc.fix:
                self.record.failed_step["fix"] = exc.fix
            ui.failure(f"step '{name}' failed:", str(exc))
            raise StepFailed(name) from exc

    def release_tree(self) -> None:
        """Other runs may check out another series once this one no longer builds from it."""
        self.tree_hold.close()

    def finish(self) -> int:
        self.release_tree()
        self.record.finished = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        write_results(self.run_dir, self.record)
        counts = self.record.counts()
        line = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
        ui.console.print((self.run_dir / "summary.md").read_text(), markup=False)
        if excused := len(self.record.splats) - len(self.record.failing_splats()):
            ui.info(f"{excused} splats came from attempts lost to the emulated CPU and rerun (listed in summary.md)")
        if self.record.status == "passed":
            ui.console.print(f"[green]PASSED[/]: {escape(str(self.run_dir))}/summary.json")
        else:
            if self.record.failed_step:
                fs = self.record.failed_step
                # CI logs may keep only the end of the output: the details (e.g.
                # the end of a console) first, then the verdict, fix and log.
                headline, _, details = fs["message"].partition("\n")
                if details:
                    ui.info(details)
                ui.console.print("[red]FAILED[/]", end=" ")
                ui.console.print(f"at step '{fs['step']}': {headline}", markup=False, highlight=False)
                if "fix" in fs:
                    ui.info(f"fix: {fs['fix']}")
                ui.info(f"log: {fs['log']}")
            for case in self.record.cases:
                if case.status == "failed":
                    ui.failure("FAILED", f"test {case.level}/{case.name}: {case.message}")
            for s in self.record.failing_splats():
                ui.failure("SPLAT", f"{s.level} {s.kind}: {s.line} ({s.source}:{s.line_no})")
            ui.info(f"results: {self.run_dir}")
        if reruns := self.record.reruns():
            signs = sorted({e.split(":")[0] for a in reruns for e in a.get("evidence", [])})
            line += f"; FLAKY: {len(reruns)} attempt(s) lost to the emulator ({', '.join(signs)}) and rerun"
        print(f"lab: {line}", flush=True)
        return 0 if self.record.status == "passed" else 1

    def guarded(self, body: Callable[[], None]) -> int:
        """Run `body` (a command's steps) so that whatever ends it leaves a
        verdict: a failed step, an exception (status "error") or a signal or
        Ctrl-C (status "interrupted", then re-raised) all write summary.json,
        junit.xml and summary.md and move results/latest."""
        try:
            body()
        except StepFailed:
            pass
        except (KeyboardInterrupt, SystemExit) as exc:
            why = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else f"exit {exc.code} (a signal: SIGTERM/SIGHUP)"
            self._ended_by("interrupted", why)
            self.finish()
            raise
        except Exception as exc:  # noqa: BLE001 - any bug of the lab must still leave a verdict
            self._ended_by("error", f"{type(exc).__name__}: {exc}")
        finally:
            self.leave_runtime()
        return self.finish()

    def _ended_by(self, outcome: str, message: str) -> None:
        self.record.outcome = outcome
        self.record.error = {"step": self.current_step, "message": message, "traceback": traceback.format_exc()}
        ui.failure(f"{outcome} in step '{self.current_step}':", message)

    # -- steps ------------------------------------------------------------------

    def enter_runtime(self) -> None:
        """With --container, every later command runs in the toolchain image."""
        if not self.opts.container or not isinstance(self.runner.runtime, NativeRuntime):
            return
        from lab.container import container_runtime

        with self.step("container"):
            runner = Runner(self.runner.log_dir, container_runtime(self.runner, self.opts.engine))
            runner.start_runtime()
            self.runner = runner
            self.record.runtime = runner.runtime.metadata()
            ui.info(f"running every command in {runner.runtime.metadata()['engine']} image {runner.runtime.metadata()['image']}")

    def leave_runtime(self) -> None:
        self.runner.stop_runtime()

    def doctor(self) -> None:
        self.enter_runtime()
        with self.step("doctor"):
            # An image is not installed into: what it lacks is a bug of images/packages.txt.
            install = self.opts.install and isinstance(self.runner.runtime, NativeRuntime)
            self.record.host = hostinfo.collect(doctor.doctor(self.runner, install=install))

    def source(self) -> SourceTree:
        with self.step("source"):
            lock = effective_lock(self.opts)
            self.lock = lock
            with ui.activity(f"preparing kernel source ({lock.source.identity()[:60]})"):
                manager = self.source_manager = SourceManager(self.cache, self.runner, lock, self.opts.tree_name)
                if self.opts.lab_tree_commit:
                    tree = manager.checkout_commit(Path(self.opts.lab_tree_commit[0]), self.opts.lab_tree_commit[1])
                else:
                    tree = manager.prepare(PATCH_DIR if self.opts.series else None)
            self.record.source = {
                "version": lock.source.version,
                "identity": lock.source.identity(),
                "base": tree.base,
                "head": tree.head,
                "patches": list(tree.patches),
            }
            return tree

    def builder(self) -> KernelBuilder:
        return KernelBuilder(self.cache, self.runner, self.lock, jobs=self.opts.jobs)

    def kernels(self, tree: SourceTree) -> dict[str, KernelBuild]:
        if self.source_manager is not None:
            with self.step("hold source tree"):
                self.tree_hold.enter_context(self.source_manager.held(tree))
        builder = self.builder()
        configs: dict[str, str] = {}
        builds: dict[str, KernelBuild] = {}
        for name in ("host", "guest"):
            with self.step(f"config {name}"):
                fragments = kconfig.fragments_for(CONFIG_DIR, self.opts.profile, name)
                fragments = kconfig.without(fragments, self.opts.drop_options, self.run_dir / "fragments")
                configs[name] = builder.merged_config(tree, fragments)
            same = next((other for other, cfg in configs.items() if other != name and cfg == configs[name]), None)
            if same is not None:
                shared = builds[same]
                builds[name] = KernelBuild(name, shared.key, shared.entry, True, 0.0, shared_with=same)
                continue
            with self.step(f"build {name}"):
                # The container's compiler gets its own build directory: sharing one
                # with the host's would rebuild everything at each switch.
                tag = profiles.build_tag(self.opts.profile, self.opts.build_tag, self.runner.runtime.build_suffix)
                builds[name] = builder.build(name, tree, configs[name], profile=tag)
            b = builds[name]
            ui.info(f"{name} kernel: cache {'hit' if b.cache_hit else 'miss'}, {b.seconds:.0f} s")
        self.record.build = {name: b.summary() for name, b in builds.items()}
        return builds

    def prepare_vms(
        self, tree: SourceTree, builds: dict[str, KernelBuild], guest_binaries: dict[str, Path] | None = None
    ) -> tuple[Level1, dict[str, Any], Path]:
        """Everything both VM levels need: BPF, guest driver, initramfs, level 1's accelerator.

        Returns level 1, the config handed to the in-VM runner, and its output directory.
        """
        host, guest = builds["host"], builds["guest"]
        self.system_map = host.bzimage.parent / "System.map"
        since = time.time()
        with self.step("build BPF"):
            bpf_out = build_bpf(self.cache, self.runner, host.btf, tree.path, tree.identity)
        self._note_artifact("bpf", bpf_out, since)
        pvsched = (tree.path / "include/uapi/linux/pvsched.h").exists()
        extra: dict[str, Path] = {}
        if pvsched:
            since = time.time()
            with self.step("build guest driver"):
                config = (guest.entry / "config").read_text()
                driver = build_guest(self.cache, self.runner, tree, guest,
                                     lambda bdir: self.builder().resync("guest", tree, config, bdir, guest.key))  # fmt: skip
            self._note_artifact("guest_driver", driver.module.parent, since)
            extra = driver.initramfs_files()
        self.release_tree()  # the last build from the tree
        since = time.time()
        with self.step("build guest initramfs"):
            if guest_binaries:
                extra.update(with_libraries(self.runner, guest_binaries))
            initramfs = build_initramfs(self.cache, self.runner, extra=extra)
        self._note_artifact("initramfs", initramfs, since)
        level1 = Level1(self.cache, self.runner, host.bzimage, host.key, self.opts.level1)
        with self.step("probe level 1 accelerator"):
            mode, probes, cached = level1.probe(use_cache=not self.opts.reprobe)
        ui.info(f"level 1 accelerator: {mode}{' (cached probe)' if cached else ''}")
        self.record.levels["1"] = {"accel": mode, "probes": [p.to_dict() for p in probes], "probe_cached": cached}
        out = self.run_dir / "vm"
        out.mkdir(parents=True, exist_ok=True)
        cfg: dict[str, Any] = {
            "out": str(out),
            "qemu": "qemu-system-x86_64",
            "guest_kernel": str(guest.bzimage),
            "guest_initramfs": str(initramfs),
            "guest_cpus": self.opts.guest_cpus,
            "guest_mem_mb": self.opts.guest_mem_mb,
            "kvm_timeout": self.opts.level2_kvm_timeout,
            "tcg_timeout": self.opts.level2_tcg_timeout,
            "guest_append": self.opts.guest_append,
            "bpf_hello": str(bpf_out / "hello"),
            "irq_latency": str(bpf_out / "irq_latency"),
            "scx_simple": str(bpf_out / "scx_simple"),  # the kernel's own sched_ext example (the control's base-scx)
            "level1_accel": mode,
            "trace_shutdowns": True,  # KVM's witness of a level-2 guest that ends early (lab.invm.shutdown_trace)
        }
        if pvsched:
            cfg["pvsched"] = {
                "loader": str(bpf_out / "pvsched_boost"),
                "scx_loader": str(bpf_out / "pvsched_scx"),
                "load_check": str(bpf_out / "load_check"),
                "rejected": [str(bpf_out / f"{name}.bpf.o") for name in REJECTED_BPF],
            }
        return level1, cfg, out

    def _note_artifact(self, name: str, entry: Path, since: float) -> None:
        """Records one cached build: a hit if `entry` is unchanged since the
        step began (entries are renamed into place whole, which sets their ctime)."""
        # File times come from the kernel's coarse clock, up to a tick behind
        # time.time(): an entry made just after `since` can look older than it.
        hit = entry.stat().st_ctime < since - COARSE_CLOCK_S
        seconds = round(time.time() - since, 1)
        self.record.build[name] = {"cache": "hit" if hit else "miss", "seconds": seconds, "path": str(entry)}
        ui.info(f"{name}: cache {'hit' if hit else 'miss'}, {seconds:.0f} s")

    def boot_level1(self, level1: Level1, module: str, cfg: dict[str, Any], out: Path, report: str) -> dict[str, Any]:
        """Run `module` in level 1 with `cfg`; returns the report it wrote to out/`report`."""
        (out / "level1-config.json").write_text(json.dumps(cfg, indent=2))
        mode = str(self.record.levels["1"]["accel"])
        with self.step(f"boot level 1 and run {module}"):
            command = python_exec(self.runner.runtime.python, module, str(out / "level1-config.json"))
            result, ready = level1.run(mode, command, [self.run_dir], module, SILENCE_KILL_S)
            (out / "level1-console.log").write_text(result.output)
            # virtme-ng may lose the status of --exec; the report decides.
            self.record.levels["1"].update({"boot_seconds": ready, "exit_status": result.returncode})
            report_path = out / report
            if not report_path.exists():
                self.scan_log(result.output, "level1", "vm/level1-console.log")
                why = "timed out" if result.timed_out else f"exit status {result.returncode}"
                # Its console is the only witness (CI keeps just this output).
                raise LabError(
                    f"level 1 ended ({why}) without writing {report}; the end of its console:\n" + console_tail(result.output),
                    log=str(result.log),
                )
        data: dict[str, Any] = json.loads(report_path.read_text())
        return data

    def keep_cpu_dump(self, out: Path) -> None:
        """Level 1's CPU dumps (at most two per boot, lab.vm) go with its attempt."""
        for dump in self.runner.log_dir.glob("level1-cpus*.txt"):
            dump.rename(out / dump.name)

    def level1_accel(self) -> str:
        return str(self.record.levels.get("1", {}).get("accel", ""))

    def judge_attempt(self, out: Path, failed_checks: list[tuple[str, str]], first_splat: int, lost: str) -> attempts_lib.Judgement:
        """Judge a failed attempt whose files are in `out` (lab.attempts)."""
        marks = landmarks.read(self.system_map.parent if self.system_map else None)
        guest_text = exit_returns.GuestText(self.runner, out)
        signs = emulator_faults.find(out, self.level1_accel(), emulator_faults.read_symbols(self.system_map), marks, guest_text.exit_before)
        failures = attempts_lib.failures_of(out, failed_checks, self.record.splats[first_splat:], lost)
        return attempts_lib.judge(out, signs, failures)

    def excuse_attempt(self, first_splat: int, first_case: int, kept: str, why: str) -> None:
        """The splats and checks recorded since the given indexes came from an
        attempt lost to the emulator: listed as such (skipped, with why), not failing the run."""
        self.record.splats[first_splat:] = [
            replace(s, attributed=why, source=s.source.replace("vm/", f"{kept}/", 1)) for s in self.record.splats[first_splat:]
        ]
        number = int(kept.removeprefix("vm-attempt"))
        for i in range(first_case, len(self.record.cases)):
            case = replace(self.record.cases[i], attempt=number)
            if case.status == "failed":
                case = replace(case, status="skipped", message=f"{why}; {case.message}")
            self.record.cases[i] = case

    def keep_attempt(self, out: Path, number: int) -> Path:
        kept = out.with_name(f"vm-attempt{number}")
        out.rename(kept)
        out.mkdir()
        return kept

    def scan_level2(self, out: Path) -> None:
        """Every level-2 console of the attempt (each guest, each try), its dmesg part."""
        found: list[Splat] = []
        for console in sorted(out.glob("level2-console-*.log")):
            found += scan_guest_console(console.read_text(errors="replace"), f"vm/{console.name}")
        self.record.splats.extend(found)
        detail = "; ".join(f"{s.kind}: {s.line}" for s in found[:3])
        self.record.cases.append(Case("no_splats_level2", "level2", "failed" if found else "passed", detail))

    def scan_log(self, text: str, level: str, source: str) -> None:
        found = scan(text, level, source)
        self.record.splats.extend(found)
        detail = "; ".join(f"{s.kind}: {s.line}" for s in found[:3])
        self.record.cases.append(Case(f"no_splats_{level}", level, "failed" if found else "passed", detail))

    # -- the one entry point --------------------------------------------------------

    def run_suite(self, suite: Callable[[SourceTree, dict[str, KernelBuild]], None]) -> int:
        """doctor -> source -> kernels, then `suite` with the tree and the builds; the verdict."""

        def body() -> None:
            self.doctor()
            tree = self.source()
            suite(tree, self.kernels(tree))

        return self.guarded(body)
