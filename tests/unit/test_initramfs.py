from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.initramfs import build_initramfs
from lab.runner import Runner

pytestmark = pytest.mark.skipif(not shutil.which("busybox") or not shutil.which("cpio"), reason="busybox/cpio missing")


def listing(path: Path) -> list[str]:
    out = subprocess.run(f"zcat {path} | cpio -t --quiet", shell=True, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_initramfs_has_init_busybox_and_extras(tmp_path: Path, runner: Runner) -> None:
    extra = tmp_path / "tool"
    extra.write_text("#!/bin/sh\n")
    image = build_initramfs(tmp_path / "c1", runner, extra={"bin/tool": extra})
    names = listing(image)
    assert {"init", "bin/busybox", "bin/tool"} <= set(names)


def test_initramfs_is_reproducible_and_cached(tmp_path: Path, runner: Runner) -> None:
    a = build_initramfs(tmp_path / "c1", runner)
    b = build_initramfs(tmp_path / "c2", runner)
    assert a.read_bytes() == b.read_bytes()
    logs = len(list(runner.log_dir.glob("*.log")))
    assert build_initramfs(tmp_path / "c1", runner) == a
    assert len(list(runner.log_dir.glob("*.log"))) == logs  # cache hit ran nothing
