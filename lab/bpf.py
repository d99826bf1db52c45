"""Building the BPF programs in bpf/ against a kernel's BTF, cached by content."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lab.cache import publish
from lab.doctor import TOOLS, check_tool
from lab.errors import LabError
from lab.paths import REPO
from lab.runner import Runner

BPF_DIR = REPO / "bpf"


def find_clang(runner: Runner) -> str:
    check = check_tool(next(t for t in TOOLS if t.name == "clang"), runner)
    if not check.ok or check.path is None:
        raise LabError(f"clang >= 16 needed for BPF: {check.problem}", fix="nox -s doctor")
    return check.path


def build_bpf(cache: Path, runner: Runner, btf: Path, ksrc: Path, source_identity: str) -> Path:
    """Runs bpf/Makefile into a directory keyed by sources + kernel + clang + runtime; returns it.

    `ksrc` is the kernel tree (libbpf and the pvsched ABI header come from
    it), `source_identity` what identifies its content (source + series).
    """
    clang = find_clang(runner)
    h = hashlib.sha256(clang.encode() + source_identity.encode())
    # The loaders link against the runtime's libc: the image's would not run
    # natively (its glibc is newer), so each runtime has its own build.
    h.update(repr(sorted(runner.runtime.metadata().items())).encode())
    for path in sorted(BPF_DIR.iterdir()):
        if path.is_file():
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    h.update(btf.read_bytes())
    out = cache / "bpf" / h.hexdigest()[:24]

    def make(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        runner.run(
            ["make", "-C", str(BPF_DIR), f"-j{os.cpu_count() or 1}", f"OUT={tmp}", f"BTF={btf}", f"KSRC={ksrc}", f"CLANG={clang}"],
            "build BPF programs",
        )
        (tmp / ".done").write_text("")

    out.parent.mkdir(parents=True, exist_ok=True)
    publish(out, make, lambda path: (path / ".done").exists())
    return out
