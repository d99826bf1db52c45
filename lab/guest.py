"""Guest-side artifacts built against the guest kernel: the pvsched module and tools."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from lab.build import KernelBuild
from lab.cache import Store, file_lock
from lab.errors import LabError
from lab.paths import REPO
from lab.runner import Runner
from lab.source import SourceTree

GUEST_DIR = REPO / "guest"


@dataclass(frozen=True)
class GuestArtifacts:
    module: Path
    rtspin: Path

    def initramfs_files(self) -> dict[str, Path]:
        return {"lib/modules/pvsched_guest.ko": self.module, "bin/rtspin": self.rtspin}


def _digest(kernel_key: str) -> str:
    h = hashlib.sha256(kernel_key.encode())
    for path in sorted(GUEST_DIR.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(GUEST_DIR)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:24]


def build_guest(cache: Path, runner: Runner, tree: SourceTree, guest: KernelBuild) -> GuestArtifacts:
    """Out-of-tree module against the guest kernel's build directory, plus static tools."""
    out = cache / "guest" / _digest(guest.key)
    done = GuestArtifacts(out / "pvsched_guest.ko", out / "rtspin")
    if done.module.exists() and done.rtspin.exists():
        return done
    bdir = Path(str(Store.read_meta(guest.entry)["build_dir"]))
    if not (bdir / "Module.symvers").exists():
        raise LabError(f"guest kernel build directory {bdir} is gone", fix=f"rm -r {guest.entry} and rerun")
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(GUEST_DIR, tmp)
    with file_lock(bdir.with_name(bdir.name + ".lock")):
        runner.run(["make", "-C", str(tree.path), f"O={bdir}", f"M={tmp}", "modules"], "build guest module")
    runner.run(["gcc", "-O2", "-static", "-Wall", "-o", str(tmp / "rtspin"), str(tmp / "tools/rtspin.c")], "build rtspin")
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    return done
