"""`lab doctor`: check every tool a run needs, and install what is missing.

On Debian and Ubuntu missing packages are installed with apt-get (through
sudo when not root); elsewhere the exact command to run is printed.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from lab import ui
from lab.errors import LabError
from lab.runner import Runner

Version = tuple[int, ...]


@dataclass(frozen=True)
class Tool:
    name: str
    commands: tuple[str, ...]  # candidates, first found wins
    packages: tuple[str, ...]  # Debian/Ubuntu packages, first one apt offers wins
    version_args: tuple[str, ...] = ("--version",)
    minimum: Version = ()
    why: str = ""
    header: str = ""  # for libraries: a header that must exist
    static: bool = False  # the binary must be statically linked (copied into initramfs)


@dataclass
class Check:
    tool: Tool
    path: str | None
    version: Version | None
    problem: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.problem is None


TOOLS: tuple[Tool, ...] = (
    Tool("make", ("make",), ("make",), why="kbuild"),
    Tool("gcc", ("gcc",), ("gcc",), minimum=(8,), why="kernel compiler"),
    Tool("flex", ("flex",), ("flex",), why="kconfig"),
    Tool("bison", ("bison",), ("bison",), why="kconfig"),
    Tool("bc", ("bc",), ("bc",), version_args=("--version",), why="kbuild"),
    Tool("perl", ("perl",), ("perl",), why="kbuild"),
    Tool("libelf", (), ("libelf-dev",), header="/usr/include/gelf.h", why="objtool, resolve_btfids"),
    Tool("pahole", ("pahole",), ("pahole", "dwarves"), minimum=(1, 22), why="BTF generation"),
    Tool("objcopy", ("objcopy",), ("binutils",), why="BTF extraction"),
    Tool("objdump", ("objdump",), ("binutils",), why="the VMRUN return address (lab.landmarks)"),
    Tool("cpio", ("cpio",), ("cpio",), why="guest initramfs"),
    Tool("xz", ("xz",), ("xz-utils",), why="kernel tarball"),
    Tool("git", ("git",), ("git",), why="source tree and patches"),
    Tool("ccache", ("ccache",), ("ccache",), why="incremental builds"),
    Tool("qemu", ("qemu-system-x86_64",), ("qemu-system-x86",), minimum=(6, 0), why="both VM levels"),
    Tool("vng", ("vng",), (), minimum=(1, 30), why="boots level 1 (pip: virtme-ng)"),
    # Without udevd, virtme-ng has no virtio-serial ports and loses --exec's exit status.
    Tool("udevd", ("/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd"), ("udev",), why="virtme-ng's exec channel"),
    Tool("busybox", ("busybox",), ("busybox-static",), version_args=("--help",), static=True, why="guest userspace"),
    Tool(
        "clang",
        ("clang-19", "clang-18", "clang-17", "clang-16", "clang"),
        ("clang-19", "clang-18", "clang-17", "clang-16"),
        minimum=(16,),
        why="BPF programs (sched_ext needs >= 16)",
    ),
    # bpftool and libbpf are built from the kernel tree (bpf/Makefile): they need zlib, not packages of their own.
    Tool("zlib", (), ("zlib1g-dev",), header="/usr/include/zlib.h", why="bpftool and libbpf, built from the kernel tree"),
    Tool("cyclictest", ("cyclictest",), ("rt-tests",), version_args=("--help",), why="latency benchmark"),
    Tool("stress-ng", ("stress-ng",), ("stress-ng",), version_args=("--version",), why="host load"),
)

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> Version | None:
    """First dotted version number in a tool's output (v1.24, 19.1.7, ...)."""
    m = _VERSION.search(text)
    if not m:
        return None
    return tuple(int(p) for p in m.groups() if p is not None)


def is_static_elf(path: Path) -> bool:
    """True when an ELF executable has no PT_INTERP program header."""
    data = path.read_bytes()[:4096]
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize = int.from_bytes(data[0x36:0x38], "little")
    phnum = int.from_bytes(data[0x38:0x3A], "little")
    for i in range(phnum):
        off = phoff + i * phentsize
        if int.from_bytes(data[off : off + 4], "little") == 3:  # PT_INTERP
            return False
    return True


def check_tool(tool: Tool, runner: Runner) -> Check:
    if tool.header:
        ok = runner.exists(Path(tool.header))
        return Check(tool, tool.header if ok else None, None, None if ok else f"{tool.header} missing")
    for cand in tool.commands:
        path = runner.which(cand) if not cand.startswith("/") else (cand if runner.exists(Path(cand)) else None)
        if path:
            break
    else:
        return Check(tool, None, None, "not found")
    try:
        out = runner.run([path, *tool.version_args], f"version of {tool.name}", timeout=30, check=False)
    except (OSError, LabError) as exc:
        return Check(tool, path, None, f"cannot run: {exc}")
    if out.timed_out:
        return Check(tool, path, None, f"cannot run: `{path} {' '.join(tool.version_args)}` timed out")
    text = out.output
    version = parse_version(text)
    if tool.minimum and (version is None or version < tool.minimum):
        shown = ".".join(map(str, version)) if version else "unknown"
        return Check(tool, path, version, f"version {shown} < required {'.'.join(map(str, tool.minimum))}")
    if tool.static and not is_static_elf(runner.readable(Path(path))):
        return Check(tool, path, version, "dynamically linked; the guest needs a static binary")
    return Check(tool, path, version)


def is_debian_like() -> bool:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return False
    return bool(re.search(r"^(ID|ID_LIKE)=.*\b(debian|ubuntu)\b", text, re.M))


def apt_candidate(package: str, runner: Runner) -> bool:
    out = runner.run(["apt-cache", "policy", package], f"apt-cache policy {package}", check=False)
    m = re.search(r"Candidate:\s*(\S+)", out.output)
    return bool(m and m.group(1) != "(none)")


def packages_for(missing: list[Check], runner: Runner) -> tuple[list[str], list[str]]:
    """(apt packages to install, tools apt cannot provide)."""
    pkgs: list[str] = []
    unavailable: list[str] = []
    for check in missing:
        choices = [p for p in check.tool.packages if apt_candidate(p, runner)]
        if choices:
            pkgs.append(choices[0])
        else:
            unavailable.append(check.tool.name)
    return pkgs, unavailable


def install_fix(missing: list[Check], debian_like: bool) -> str:
    """The exact line for Debian/Ubuntu; elsewhere what to look for, or the container."""
    pkgs = sorted({p for c in missing for p in c.tool.packages[:1]})
    # Into the Python that runs the lab (a nox session's venv): Debian's own refuses pip (PEP 668).
    pip = f"{sys.executable} -m pip install virtme-ng" if any(c.tool.name == "vng" for c in missing) else ""
    if debian_like:
        apt = f"{' '.join(sudo_prefix())} apt-get install -y {' '.join(pkgs)}".strip() if pkgs else ""
        return " ; ".join(step for step in (apt, pip) if step)
    wanted = ", ".join(f"{c.tool.name} ({c.tool.why})" for c in missing)
    return (f"install with your distribution's package manager: {wanted} (Debian calls them {' '.join(pkgs) or 'nothing'}); "
            "or run any session in the lab's image instead: nox -s lab -- --container")  # fmt: skip


def sudo_prefix() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo"]


@dataclass(frozen=True)
class KvmAccess:
    """Whether level 1 can use KVM here, and the exact fix when it cannot
    (the lab still runs: its probe falls back to TCG, much slower)."""

    problem: str | None
    fix: str


def check_kvm(dev: Path = Path("/dev/kvm"), sys_module: Path = Path("/sys/module"), user: str | None = None) -> KvmAccess:
    who = user or os.environ.get("SUDO_USER") or os.environ.get("USER") or "$USER"
    if not dev.exists():
        return KvmAccess("no /dev/kvm", "enable virtualization in the firmware and load kvm_intel or kvm_amd (sudo modprobe kvm_amd)")
    if not os.access(dev, os.R_OK | os.W_OK):
        return KvmAccess(f"{dev} not readable and writable by this user",
                         f"sudo usermod -aG kvm {who}, then log in again (or a udev rule giving {dev} mode 0666)")  # fmt: skip
    for module in ("kvm_amd", "kvm_intel"):
        param = sys_module / module / "parameters" / "nested"
        if param.exists() and param.read_text().strip() not in ("1", "Y", "y"):
            return KvmAccess(f"{module}: nested virtualization is off (level 1 runs KVM for level 2)",
                             f"echo 'options {module} nested=1' | sudo tee /etc/modprobe.d/pvsched-lab.conf && "
                             f"sudo modprobe -r {module} && sudo modprobe {module}")  # fmt: skip
    return KvmAccess(None, "")


def report(checks: list[Check], kvm: KvmAccess | None = None) -> None:
    table = Table(title="lab doctor")
    for col in ("tool", "status", "version", "path", "needed for"):
        table.add_column(col)
    for c in checks:
        status = "[green]ok[/]" if c.ok else f"[red]{c.problem}[/]"
        version = ".".join(map(str, c.version)) if c.version else ""
        table.add_row(c.tool.name, status, version, c.path or "", c.tool.why)
    if kvm is not None:
        status = "[green]ok[/]" if kvm.problem is None else f"[yellow]{kvm.problem}; fix: {kvm.fix}[/]"
        table.add_row("kvm", status, "", "/dev/kvm", "level 1 under KVM (else TCG, much slower)")
    ui.console.print(table)


def doctor(runner: Runner, install: bool) -> list[Check]:
    checks = [check_tool(t, runner) for t in TOOLS]
    missing = [c for c in checks if not c.ok]
    if missing and install and is_debian_like():
        runner.run([*sudo_prefix(), "apt-get", "update", "-q"], "apt-get update")
        pkgs, _ = packages_for(missing, runner)
        if pkgs:
            with ui.activity("installing " + " ".join(pkgs)) as progress:
                runner.run(
                    [*sudo_prefix(), "apt-get", "install", "-y", "-q", "--no-install-recommends", *pkgs],
                    "apt-get install",
                    env_extra={"DEBIAN_FRONTEND": "noninteractive"},
                    on_line=progress,
                )
        checks = [check_tool(t, runner) for t in TOOLS]
        missing = [c for c in checks if not c.ok]
    report(checks, check_kvm())
    if missing:
        names = ", ".join(c.tool.name for c in missing)
        raise LabError(f"missing or too old: {names}", fix=install_fix(missing, is_debian_like()))
    return checks
