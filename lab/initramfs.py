"""The level-2 guest's root: a busybox initramfs built by the lab, cached by content.

A root in memory avoids 9p through two levels of emulated virtio (358 s for
one command measured here) and boots in seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from lab.cache import publish
from lab.errors import LabError
from lab.runner import Runner

INIT = Path(__file__).parent / "invm" / "guest_init.sh"
DIRS = ("bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "root", "lib", "lib64")


def parse_ldd(output: str) -> list[Path]:
    """Shared libraries an `ldd` listing names, absolute paths only (no vdso)."""
    libs = []
    for line in output.splitlines():
        parts = line.strip().split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libs.append(Path(target))
        elif parts and parts[0].startswith("/"):
            libs.append(Path(parts[0]))  # the dynamic loader
    return libs


def with_libraries(runner: Runner, binaries: dict[str, Path]) -> dict[str, Path]:
    """`binaries` (paths in the runtime) plus every shared library they load,
    at the same paths in the guest, each where this machine can read it."""
    files = {inside: runner.readable(path) for inside, path in binaries.items()}
    for path in binaries.values():
        out = runner.run(["ldd", str(path)], f"ldd {path.name}", check=False).output
        for lib in parse_ldd(out):
            files[str(lib).lstrip("/")] = runner.readable(lib)
    return files


def inputs_digest(busybox: Path, extra: dict[str, Path]) -> str:
    h = hashlib.sha256()
    for name, path in sorted({"busybox": busybox, "init": INIT, **extra}.items()):
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def build_initramfs(cache: Path, runner: Runner, busybox: str | None = None, extra: dict[str, Path] | None = None) -> Path:
    """Returns the path of a gzip'd newc cpio with /init, busybox and `extra` files.

    `extra` maps paths inside the guest (e.g. "bin/tool") to host files.
    """
    found = busybox or runner.which("busybox")
    if not found:
        raise LabError("busybox not found", fix="apt-get install busybox-static")
    bb = runner.readable(Path(found))
    if not bb.exists():
        raise LabError(f"busybox not found at {found}", fix="apt-get install busybox-static")
    extra = extra or {}
    digest = inputs_digest(bb, extra)[:24]
    target = cache / "initramfs" / f"guest-{digest}.cpio.gz"
    target.parent.mkdir(parents=True, exist_ok=True)

    def pack(tmp: Path) -> None:
        stage = target.with_name(f".stage-{digest}-{os.getpid()}")
        shutil.rmtree(stage, ignore_errors=True)
        for d in DIRS:
            (stage / d).mkdir(parents=True)
        shutil.copy2(bb, stage / "bin" / "busybox")
        (stage / "bin" / "sh").symlink_to("busybox")
        shutil.copyfile(INIT, stage / "init")
        (stage / "init").chmod(0o755)
        for inside, host in extra.items():
            dest = stage / inside
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(host, dest)
        # Sorted names, owner root, fixed mtimes: the same inputs give the same bytes.
        runner.run(
            ["sh", "-c",
             'find . -exec touch -h -d @0 {} + && find . | LC_ALL=C sort | '
             'cpio --quiet -o -H newc -R 0:0 --reproducible | gzip -9n > "$1"', "sh", str(tmp)],
            "build guest initramfs",
            cwd=stage,
        )  # fmt: skip
        shutil.rmtree(stage, ignore_errors=True)

    publish(target, pack)
    return target
