"""Guest-side artifacts built against the guest kernel: the pvsched module and tools."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab import ui
from lab.build import KernelBuild, KernelBuilder, read_build_key
from lab.cache import Store, file_lock, publish
from lab.errors import LabError
from lab.paths import REPO
from lab.runner import Runner
from lab.source import SourceTree

GUEST_DIR = REPO / "guest"
TOOLS = ("rtspin", "setfifo", "kexec_boot", "syscall_loop", "ipi_pingpong")  # guest/tools/<name>.c, static, in the initramfs's bin/


@dataclass(frozen=True)
class GuestArtifacts:
    module: Path
    tools: dict[str, Path]  # TOOLS by name

    def initramfs_files(self) -> dict[str, Path]:
        return {"lib/modules/pvsched_guest.ko": self.module, **{f"bin/{name}": path for name, path in self.tools.items()}}


def _digest(kernel_key: str) -> str:
    h = hashlib.sha256(kernel_key.encode())
    for path in sorted(GUEST_DIR.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(GUEST_DIR)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:24]


def build_guest(cache: Path, runner: Runner, tree: SourceTree, guest: KernelBuild, resync: Callable[[Path], None]) -> GuestArtifacts:
    """Out-of-tree module against the guest kernel's build directory, plus static tools.

    The build directory is shared by every series and config of a profile:
    before the module is built there, `resync(bdir)` brings it back to the
    build of `guest.key` if another run built something else in it since,
    so the module is cached under the key of the build it was built against.
    """
    out = cache / "guest" / _digest(guest.key)
    done = GuestArtifacts(out / "pvsched_guest.ko", {name: out / name for name in TOOLS})
    bdir = Path(str(Store.read_meta(guest.entry)["build_dir"]))

    def make(tmp: Path) -> None:
        if not (bdir / "Module.symvers").exists():
            raise LabError(f"guest kernel build directory {bdir} is gone", fix=f"rm -r {guest.entry} and rerun")
        shutil.copytree(GUEST_DIR, tmp)
        with file_lock(bdir.with_name(bdir.name + ".lock")):
            if read_build_key(bdir) != guest.key:
                ui.info(f"the kernel build directory {bdir} holds another build: rebuilding {guest.name} there first")
                resync(bdir)
            # The kernel build's debug prefix maps plus the module's directory.
            flags = KernelBuilder.extra_flags(bdir.resolve(), tree.path.resolve(), tmp.resolve())
            runner.run(["make", "-C", str(tree.path), f"O={bdir}", f"M={tmp}", *flags, "modules"], "build guest module")
        for tool in TOOLS:
            runner.run(["gcc", "-O2", "-static", "-Wall", "-o", str(tmp / tool), str(tmp / f"tools/{tool}.c")], f"build {tool}")

    out.parent.mkdir(parents=True, exist_ok=True)
    publish(out, make, lambda path: all((path / name).exists() for name in ("pvsched_guest.ko", *TOOLS)))
    return done
