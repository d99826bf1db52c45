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


def test_parse_ldd_keeps_libraries_and_loader() -> None:
    from lab.initramfs import parse_ldd

    out = """\
\tlinux-vdso.so.1 (0x00007f82d7ba2000)
\tlibnuma.so.1 => /lib/x86_64-linux-gnu/libnuma.so.1 (0x00007f82d7b66000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f82d7984000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f82d7ba4000)
\tlibgone.so => not found
"""
    assert [str(p) for p in parse_ldd(out)] == [
        "/lib/x86_64-linux-gnu/libnuma.so.1",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
    ]
