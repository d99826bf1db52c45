"""Failure drills: bad input to the real lab gives a clear error and loses nothing.

Each drill runs `python -m lab` on a copy of this checkout with one thing
broken (the lock's checksum, a patch, a config fragment, PATH, level 1's or
the guest's kernel command line) and checks what a user sees: a non-zero
exit, the failed step, the cause, the fix and a log that exists, in the last
lines and in summary.json. The last drill checks that the caches still serve
the unbroken checkout: every kernel a cache hit.

Slow (the VM drills boot level 1); run by `nox -s drills`, not by the unit
tests. The drills share the build cache with every other run; the lab's
source-tree lock keeps a concurrent run's build safe from their checkouts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.lockfile import load_lock, sha256_file
from lab.paths import LOCK_FILE, REPO, cache_dir


@dataclass
class Outcome:
    returncode: int
    output: str
    summary: dict[str, Any]

    @property
    def tail(self) -> str:
        """The last lines, whitespace folded (a terminal may wrap long lines)."""
        return " ".join(" ".join(self.output.rstrip().splitlines()[-25:]).split())


def checkout_copy(dest: Path) -> Path:
    """This checkout's files as they are now (tracked and new, not ignored)."""
    names = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "-co", "--exclude-standard"],
                           capture_output=True, text=True, check=True).stdout.split("\0")  # fmt: skip
    for name in filter(None, names):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def lab(checkout: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 1800) -> Outcome:
    """`python -m lab ARGS` run from `checkout` (its own package, its own results/)."""
    cmd = [sys.executable, "-m", "lab", *args]
    print("$", " ".join(cmd), f"(in {checkout})", flush=True)
    full_env = {**os.environ, "PYTHONPATH": str(checkout), "COLUMNS": "200", **(env or {})}
    proc = subprocess.run(cmd, cwd=checkout, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)
    output = proc.stdout + proc.stderr
    sys.stdout.write(output[-4000:])
    run = re.search(r"run (\d{8}T\d{6}Z-\w+): results in", output)
    summary_path = checkout / "results" / run.group(1) / "summary.json" if run else None
    summary = json.loads(summary_path.read_text()) if summary_path and summary_path.exists() else {}
    return Outcome(proc.returncode, output, summary)


def assert_failed_step(out: Outcome, step: str, *message_parts: str, fix: str = "") -> None:
    """The run failed at `step`, and its last lines and summary.json say why, what to do, and where the log is."""
    assert out.returncode == 1, out.tail
    failed = out.summary.get("failed_step") or {}
    assert failed.get("step") == step, failed
    for part in message_parts:
        assert part in failed["message"], (part, failed["message"])
        assert part in out.tail, (part, out.tail)
    assert f"FAILED at step '{step}'" in out.tail
    if fix:
        assert fix in failed.get("fix", ""), failed
        assert fix in out.tail, out.tail
    assert Path(failed["log"]).exists(), failed["log"]
    assert f"log: {failed['log']}" in out.tail


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return checkout_copy(tmp_path / "checkout")


def test_wrong_checksum_stops_before_unpacking_and_keeps_the_good_download(checkout: Path) -> None:
    lock = load_lock(LOCK_FILE).source
    pinned = cache_dir() / "downloads" / f"linux-{lock.version}-{lock.sha256[:16]}.tar.xz"
    wrong = "0" * 64
    text = (checkout / "kernel/source.lock").read_text()
    (checkout / "kernel/source.lock").write_text(text.replace(f'sha256 = "{lock.sha256}"', f'sha256 = "{wrong}"'))
    out = lab(checkout, "kernel", "--no-install")
    assert_failed_step(out, "source", "checksum mismatch", f"expected {wrong}, got {lock.sha256}",
                       fix=f'sha256 = "{lock.sha256}" in kernel/source.lock')  # fmt: skip
    leftovers = [p.name for p in pinned.parent.iterdir() if wrong[:16] in p.name]
    assert leftovers == [], "a file that is not what the lock pins was kept"
    if pinned.exists():  # the good download is untouched
        assert sha256_file(pinned) == lock.sha256


def test_a_patch_that_does_not_apply_is_named_and_the_tree_is_left_clean(checkout: Path) -> None:
    series = (checkout / "kernel/patches/series").read_text().split()
    victim = checkout / "kernel/patches" / series[-1]
    lines = victim.read_text().splitlines(keepends=True)
    first_hunk = next(i for i, line in enumerate(lines) if line.startswith("@@"))
    context = next(i for i in range(first_hunk + 1, len(lines)) if lines[i].startswith(" "))
    lines[context] = " this context line is not in the kernel (lab drill)\n"
    victim.write_text("".join(lines))
    out = lab(checkout, "kernel", "--no-install")
    assert_failed_step(out, "source", f"patch {victim} does not apply", fix="git format-patch")
    lock = load_lock(LOCK_FILE).source
    tree = cache_dir() / "src" / f"linux-{lock.version}-{lock.sha256[:16]}"
    assert not (tree / ".git" / "rebase-apply").exists(), "git am was left half-done in the shared tree"
    log = Path(out.summary["failed_step"]["log"]).read_text()
    assert "patch does not apply" in log or "error:" in log


def test_a_config_option_olddefconfig_drops_is_named(checkout: Path) -> None:
    with (checkout / "kernel/configs/host.config").open("a") as f:
        f.write("# lab drill: needs DRM, which the lean config leaves out\nCONFIG_DRM_I915=y\n")
    out = lab(checkout, "kernel", "--no-install")
    assert_failed_step(out, "config host", "CONFIG_DRM_I915")


def test_a_missing_tool_is_named_with_the_install_command(checkout: Path, tmp_path: Path) -> None:
    hidden = "cyclictest"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for d in os.environ["PATH"].split(os.pathsep):
        for exe in Path(d).glob("*") if Path(d).is_dir() else []:
            if exe.name != hidden and not (bindir / exe.name).exists():
                (bindir / exe.name).symlink_to(exe)
    out = lab(checkout, "doctor", "--no-install", env={"PATH": str(bindir)})
    assert out.returncode != 0, out.tail
    assert f"missing or too old: {hidden}" in out.tail
    assert "apt-get install -y rt-tests" in out.tail


def test_a_level1_that_hangs_is_killed_and_reported_with_its_console(checkout: Path) -> None:
    # The root file system cannot be mounted, and panic=0 keeps the panicked
    # kernel where it is: a VM that hangs without a word.
    out = lab(checkout, "run", "--no-install", "--vm-retries", "0", "--level1-timeout", "120",
              "--level1-append", "rootfstype=lab-drill-none panic=0")  # fmt: skip
    assert_failed_step(out, "boot level 1 and run lab.invm.level1", "timed out", "Unable to mount root fs")
    assert Path(out.summary["failed_step"]["log"]).stat().st_size > 0


def test_a_guest_that_panics_fails_the_run_with_its_panic_and_console(checkout: Path) -> None:
    # No init in the initramfs and no root device: the guest kernel panics.
    out = lab(checkout, "run", "--no-install", "--vm-retries", "0", "--guest-append", "rdinit=/lab-drill-no-init")
    assert out.returncode == 1, out.tail
    cases = {c["name"]: c for c in out.summary["tests"]["cases"]}
    boots = cases["level2_boots"]
    assert boots["status"] == "failed"
    assert "guest kernel panicked: Kernel panic - not syncing" in boots["message"]
    console = re.search(r"\(console (\S+)\)", boots["message"])
    assert console and "Kernel panic" in Path(console.group(1)).read_text()
    assert "FAILED test level1/level2_boots" in out.output


def test_the_unbroken_checkout_still_gets_every_kernel_from_the_cache() -> None:
    out = lab(REPO, "kernel", "--no-install")
    assert out.returncode == 0, out.tail
    assert {b["cache"] for b in out.summary["build"].values()} == {"hit"}
