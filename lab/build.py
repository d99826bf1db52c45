"""Kernel builds: merged config, cache key, out-of-tree incremental build, cache entry.

A build directory is kept per merged config (so a patch change rebuilds only
what it touches) and ccache sits under it; the finished kernel goes into the
content-addressed store keyed by source + patches + config + toolchain.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from lab import bzimage, kconfig, landmarks, ui
from lab.cache import Store, cache_key, file_lock
from lab.lockfile import Lock, sha256_file
from lab.runner import Runner
from lab.source import SourceTree

# Versions that change what the compiler emits; part of every cache key.
TOOLCHAIN_PROBES = {
    "gcc": ["gcc", "--version"],
    "ld": ["ld", "--version"],
    "pahole": ["pahole", "--version"],
    "make": ["make", "--version"],
}


# In a kernel build directory: the cache key of the build it holds.
BUILD_KEY_FILE = ".lab-build-key"
CCACHE_DIR = "ccache-direct"  # under the cache; "ccache" held depend-mode entries
PIGGY = "arch/x86/boot/compressed/piggy.o"  # the compressed kernel, by .incbin


def read_build_key(bdir: Path) -> str:
    try:
        return (bdir / BUILD_KEY_FILE).read_text().strip()
    except OSError:
        return ""


def module_hashes(bdir: Path) -> dict[str, str]:
    """sha256 of every module a build made, by its path in the build directory."""
    return {str(ko.relative_to(bdir)): sha256_file(ko) for ko in sorted(bdir.rglob("*.ko"))}


@dataclass(frozen=True)
class ReproBuild:
    source: str
    build_dir: str
    bzimage_sha256: str
    modules: dict[str, str]
    seconds: float


@dataclass
class KernelBuild:
    name: str
    key: str
    entry: Path
    cache_hit: bool
    seconds: float
    shared_with: str | None = None

    @property
    def bzimage(self) -> Path:
        return self.entry / "bzImage"

    @property
    def btf(self) -> Path:
        return self.entry / "vmlinux.btf"

    def summary(self) -> dict[str, object]:
        meta = Store.read_meta(self.entry)
        return {
            "key": self.key,
            "cache": "hit" if self.cache_hit else "miss",
            "seconds": round(self.seconds, 1),
            "shared_with": self.shared_with,
            "bzimage_sha256": meta.get("bzimage_sha256"),
            # Equal toolchains give equal bzImages on any machine, path or
            # user; the image's gcc 14 is not the host's gcc 12 (Debian 12).
            "toolchain": meta.get("toolchain"),
        }


def toolchain_versions(runner: Runner) -> dict[str, str]:
    versions = {}
    for name, cmd in TOOLCHAIN_PROBES.items():
        out = runner.run(cmd, f"version of {name}").output
        versions[name] = out.splitlines()[0].strip() if out else ""
    return versions


class KernelBuilder:
    def __init__(self, cache: Path, runner: Runner, lock: Lock, jobs: int | None = None, use_ccache: bool = True) -> None:
        self.cache = cache
        self.runner = runner
        self.lock = lock
        self.jobs = jobs or os.cpu_count() or 1
        self.use_ccache = use_ccache and runner.which("ccache") is not None
        self.store = Store(cache / "kernels")
        self._toolchain: dict[str, str] | None = None

    @staticmethod
    def extra_flags(bdir: Path, srctree: Path, module_dir: Path | None = None) -> list[str]:
        """DWARF names the build directory (DW_AT_comp_dir) and, in an O=
        build, every source file by its absolute path; ld's build-id hashes
        the DWARF. Both mapped away, so any build directory, cache directory
        or user gives the same bzImage and modules (kbuild maps srctree only
        out of __FILE__). `module_dir`: an external module's M= directory."""
        prefix_map = f"-fdebug-prefix-map={bdir}=. -fdebug-prefix-map={srctree}/=./"
        if module_dir is not None:
            prefix_map += f" -fdebug-prefix-map={module_dir}=./module"  # a fresh temporary directory
        return [f"KCFLAGS={prefix_map}", f"KAFLAGS={prefix_map}"]

    def make_vars(self) -> list[str]:
        # The same CC for config and build, or kbuild re-runs syncconfig.
        return ["CC=ccache gcc"] if self.use_ccache else []

    def env(self) -> dict[str, str]:
        env = self.lock.build.env()
        # Not depend mode: it cached piggy.o, whose .incbin of the compressed
        # kernel it does not track, and bzImages carried an earlier build's
        # kernel (lab/bzimage.py). Direct mode refuses to cache an .incbin.
        # Depend mode's entries answer direct-mode lookups too: a new directory.
        env["CCACHE_DIR"] = str(self.cache / CCACHE_DIR)
        # No CCACHE_BASEDIR: it hands the compiler relative paths, which the
        # debug prefix maps do not match, and ccache builds then differed from
        # cold ones (`--check-reproducible`, run 20261203T031419Z-aae6).
        env["CCACHE_NOHASHDIR"] = "1"  # no cwd in the hash: any build directory can hit
        return env

    def toolchain(self) -> dict[str, str]:
        if self._toolchain is None:
            self._toolchain = toolchain_versions(self.runner)
        return self._toolchain

    def merged_config(self, tree: SourceTree, fragments: list[kconfig.Fragment]) -> str:
        """tinyconfig + fragments via merge_config.sh + olddefconfig, verified; cached by inputs."""
        digest = cache_key(
            {
                "source": tree.identity,
                "order": ",".join(f.name for f in fragments),  # later fragments win
                **{f"frag:{f.name}": f.path.read_text() for f in fragments},
                **self.toolchain(),
            }
        )
        out = self.cache / "kconfig" / digest[:24]
        final = out / ".config"
        wanted = kconfig.requested(fragments)
        if not final.exists():
            tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            make = ["make", "-C", str(tree.path), f"O={tmp}", *self.make_vars()]
            self.runner.run([*make, "tinyconfig"], "make tinyconfig", env_extra=self.env())
            self.runner.run(
                [
                    str(tree.path / "scripts/kconfig/merge_config.sh"),
                    "-m",
                    "-O",
                    str(tmp),
                    str(tmp / ".config"),
                    *[str(f.path) for f in fragments],
                ],
                "merge_config.sh " + " ".join(f.name for f in fragments),
                env_extra=self.env(),
            )
            self.runner.run([*make, "olddefconfig"], "make olddefconfig", env_extra=self.env())
            kconfig.verify(wanted, tmp / ".config")
            shutil.rmtree(out, ignore_errors=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp, out)
        kconfig.verify(wanted, final)
        return final.read_text()

    def key_for(self, tree: SourceTree, config: str) -> str:
        return cache_key(
            {
                "source": tree.identity,
                "config": config,
                "identity": repr(sorted(self.lock.build.env().items())),
                "flags": " ".join(self.extra_flags(Path("<build dir>"), Path("<source tree>"))),
                # Kernels cached before bzImages were verified may carry another kernel.
                "bzimage": "verified",
                # Entries kept before landmarks.json cannot show the emulator's vmrun-return sign.
                "landmarks": landmarks.VMRUN_RETURN,
                **{f"tool:{k}": v for k, v in self.toolchain().items()},
            }
        )

    def build(self, name: str, tree: SourceTree, config: str, build_dir: Path | None = None, profile: str = "default") -> KernelBuild:
        key = self.key_for(tree, config)
        start = time.monotonic()
        if build_dir is None and (hit := self.store.lookup(key)):
            return KernelBuild(name, key, hit, True, time.monotonic() - start)
        with self.store.locked(key):
            if build_dir is None and (hit := self.store.lookup(key)):  # built by a concurrent run
                return KernelBuild(name, key, hit, True, time.monotonic() - start)
            # One directory per profile and kernel, kept across config and patch
            # changes: kbuild then rebuilds only what they touch (ccache cannot
            # help there, since every object depends on autoconf.h).
            bdir = build_dir or self.cache / "build" / f"{profile}-{name}"
            with file_lock(bdir.with_name(bdir.name + ".lock")):
                entry = self._compile(name, tree, config, bdir, key)
        return KernelBuild(name, key, entry, False, time.monotonic() - start)

    def make(self, name: str, tree: SourceTree, config: str, bdir: Path, extra_env: dict[str, str] | None = None) -> list[str]:
        """Build bzImage and modules in `bdir`; returns the make command prefix used."""
        bdir.mkdir(parents=True, exist_ok=True)
        cfg = bdir / ".config"
        if not cfg.exists() or cfg.read_text() != config:
            cfg.write_text(config)  # only when changed: keeps the build incremental
        flags = self.extra_flags(bdir.resolve(), tree.path.resolve())
        make = ["make", "-C", str(tree.path), f"O={bdir}", f"-j{self.jobs}", *self.make_vars(), *flags]
        env = {**self.env(), **(extra_env or {})}
        # Always compiled again (seconds): an older cache could have served a stale one.
        (bdir / PIGGY).unlink(missing_ok=True)
        with ui.activity(f"building {name} kernel") as progress:
            self.runner.run([*make, "bzImage", "modules"], f"build {name} kernel", env_extra=env, on_line=progress)
        bzimage.verify(bdir / "arch/x86/boot/bzImage", bdir / "arch/x86/boot/compressed/vmlinux.bin")
        return make

    def check_reproducible(self, tree: SourceTree, config: str) -> list[ReproBuild]:
        """Build twice from scratch without ccache: once from the source tree
        in one directory, once from a copy of it at another path in another,
        as two users or two cache directories would.

        Each is also a measured cold build of this config.
        """
        root = self.cache / "repro"
        builds = []
        with self._worktree(tree, root / "elsewhere" / "src") as other:
            sides = (("a", tree, root / "a"), ("b", other, root / "elsewhere" / "build"))
            for side, src, bdir in sides:
                shutil.rmtree(bdir, ignore_errors=True)
                start = time.monotonic()
                self.make(f"reproducibility build {side}", src, config, bdir, {"CCACHE_DISABLE": "1"})
                builds.append(ReproBuild(str(src.path), str(bdir), sha256_file(bdir / "arch/x86/boot/bzImage"),
                                         module_hashes(bdir), time.monotonic() - start))  # fmt: skip
        return builds

    @contextlib.contextmanager
    def _worktree(self, tree: SourceTree, path: Path) -> Iterator[SourceTree]:
        """`tree`'s head checked out at `path` (a git worktree, replacing a
        leftover one), removed afterwards; the shared tree stays as it is."""
        git = ["git", "-C", str(tree.path)]
        self.runner.run([*git, "worktree", "remove", "--force", str(path)], f"drop the old worktree {path.name}", check=False)
        self.runner.run([*git, "worktree", "prune"], "prune worktrees")
        self.runner.run([*git, "worktree", "add", "--detach", str(path), tree.head], f"worktree {path}")
        try:
            yield replace(tree, path=path)
        finally:
            self.runner.run([*git, "worktree", "remove", "--force", str(path)], f"drop the worktree {path.name}", check=False)

    def check_series(self, tree: SourceTree, variant: str, config: str) -> tuple[bool, str]:
        """Every patch of the series builds on its own: `git rebase --exec` of
        the series onto its base, in a worktree of its own, building vmlinux
        and modules after each patch with `config` (put back before each
        build: olddefconfig drops symbols an earlier patch does not define yet).
        Returns (passed, what happened)."""
        root = self.cache / "series" / variant
        worktree, bdir, wanted = root / "tree", root / "build", root / "wanted.config"
        bdir.mkdir(parents=True, exist_ok=True)
        wanted.write_text(config)
        make = shlex.join(["make", f"O={bdir}", f"-j{self.jobs}", *self.make_vars()])
        build_one = f"cp {shlex.quote(str(wanted))} {shlex.quote(str(bdir / '.config'))} && {make} olddefconfig && {make} vmlinux modules"
        with self._worktree(tree, worktree):
            with ui.activity(f"building the series patch by patch ({variant})") as progress:
                res = self.runner.run(
                    ["git", "-C", str(worktree), "-c", "user.name=pvsched-lab", "-c", "user.email=lab@pvsched.invalid",
                     "rebase", "--force-rebase", "--exec", build_one, tree.base],
                    f"build each patch ({variant})", env_extra=self.env(), check=False, on_line=progress,
                )  # fmt: skip
            if res.returncode != 0:
                at = self.runner.run(["git", "-C", str(worktree), "log", "-1", "--format=%s"], "the patch that failed", check=False)
                self.runner.run(["git", "-C", str(worktree), "rebase", "--abort"], "abort the series rebase", check=False)
                errors = [ln.strip() for ln in res.output.splitlines() if "error" in ln.lower()]
                return False, f"{variant}: does not build after '{at.output.strip()}': {' | '.join(errors[-3:])}"
            built = (bdir / ".config").read_text()
            # The series' own options (KVM_PVSCHED, PVSCHED_GUEST*) must survive the last patch's olddefconfig.
            series_opts = [ln for ln in config.splitlines() if re.fullmatch(r"CONFIG_\w*PVSCHED\w*=y", ln)]
            missing = [opt for opt in series_opts if opt not in built.splitlines()]
            if missing:
                return False, f"{variant}: built, but olddefconfig dropped {missing}"
            return True, f"{variant}: each of the {len(tree.patches)} patches built vmlinux and modules"

    def resync(self, name: str, tree: SourceTree, config: str, bdir: Path, key: str) -> None:
        """Bring `bdir` back to the build of `key` (another run may have built
        another series or config in it since); the caller holds its lock."""
        if read_build_key(bdir) != key:
            self.make(name, tree, config, bdir)
            (bdir / BUILD_KEY_FILE).write_text(key)

    def _compile(self, name: str, tree: SourceTree, config: str, bdir: Path, key: str) -> Path:
        make = self.make(name, tree, config, bdir)
        (bdir / BUILD_KEY_FILE).write_text(key)  # what the directory holds now
        release = self.runner.run([*make, "-s", "kernelrelease"], "kernelrelease", env_extra=self.env()).output.strip()
        with self.store.writing(key) as tmp:
            shutil.copyfile(bdir / "arch/x86/boot/bzImage", tmp / "bzImage")
            shutil.copyfile(bdir / ".config", tmp / "config")
            shutil.copyfile(bdir / "System.map", tmp / "System.map")
            landmarks.write(tmp, landmarks.find(self.runner, bdir / "vmlinux", tmp / "System.map"))
            self.runner.run(
                [
                    "objcopy",
                    "--dump-section",
                    f".BTF={tmp / 'vmlinux.btf'}",
                    str(bdir / "vmlinux"),
                    str(tmp / "vmlinux.scratch"),
                ],
                "extract vmlinux BTF",
            )
            (tmp / "vmlinux.scratch").unlink(missing_ok=True)
            self.runner.run(
                [*make, "modules_install", f"INSTALL_MOD_PATH={tmp / 'modules'}", "INSTALL_MOD_STRIP=1"],
                "modules_install",
                env_extra=self.env(),
            )
            Store.write_meta(
                tmp,
                {
                    "name": name,
                    "key": key,
                    "release": release,
                    "source": tree.identity,
                    "head": tree.head,
                    "patches": list(tree.patches),
                    "build_dir": str(bdir),
                    "toolchain": self.toolchain(),
                    "bzimage_sha256": sha256_file(tmp / "bzImage"),
                },
            )
        return self.store.entry(key)
