from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from lab.doctor import TOOLS, Tool, check_tool, is_static_elf, parse_version
from lab.runner import Runner


@pytest.mark.parametrize(
    ("text", "version"),
    [("v1.24", (1, 24)), ("Debian clang version 19.1.7 (3~deb12u1)", (19, 1, 7)), ("nothing", None)],
)
def test_parse_version(text: str, version: tuple[int, ...] | None) -> None:
    assert parse_version(text) == version


def test_missing_tool_is_reported(tmp_path: Path) -> None:
    check = check_tool(Tool("ghost", ("no-such-binary-xyz",), ("ghost-pkg",)), Runner(tmp_path / "logs"))
    assert not check.ok and check.problem == "not found"


def test_too_old_tool_is_reported(tmp_path: Path) -> None:
    check = check_tool(Tool("sh", ("sh",), (), version_args=("-c", "echo 1.0"), minimum=(99,)), Runner(tmp_path / "logs"))
    assert not check.ok and "< required 99" in (check.problem or "")
    # Run through the runner: logged with the command line to rerun by hand.
    assert "# reproduce: " in next((tmp_path / "logs").glob("*-version-of-sh.log")).read_text()


def test_missing_header_is_reported(tmp_path: Path) -> None:
    check = check_tool(Tool("lib", (), ("lib-dev",), header=str(tmp_path / "nope.h")), Runner(tmp_path / "logs"))
    assert not check.ok


def test_dynamic_binary_is_not_static() -> None:
    sh = shutil.which("sh")
    assert sh is not None
    assert is_static_elf(Path(sh).resolve()) is False


def test_clang_requirement_is_at_least_16() -> None:
    clang = next(t for t in TOOLS if t.name == "clang")
    assert clang.minimum >= (16,)
    assert "clang-14" not in clang.commands


def test_kvm_access_names_the_exact_fix(tmp_path: Path) -> None:
    from lab.doctor import check_kvm

    assert check_kvm(tmp_path / "kvm", tmp_path).problem == "no /dev/kvm"
    dev = tmp_path / "kvm"
    dev.write_text("")
    mod = tmp_path / "kvm_amd" / "parameters"
    mod.mkdir(parents=True)
    (mod / "nested").write_text("0\n")
    off = check_kvm(dev, tmp_path, user="alice")
    assert off.problem is not None and "nested" in off.problem and "options kvm_amd nested=1" in off.fix
    (mod / "nested").write_text("1\n")
    assert check_kvm(dev, tmp_path, user="alice").problem is None
    if os.geteuid() != 0:  # root can open anything
        dev.chmod(0o000)
        closed = check_kvm(dev, tmp_path, user="alice")
        assert closed.problem is not None and "usermod -aG kvm alice" in closed.fix


def test_install_fix_is_true_for_the_system() -> None:
    from lab.doctor import install_fix

    missing = [check_tool(Tool("ghost", ("no-such-binary-xyz",), ("ghost-pkg",), why="haunting"), Runner(Path("/tmp/doctor-logs")))]
    assert "apt-get install -y ghost-pkg" in install_fix(missing, debian_like=True)
    other = install_fix(missing, debian_like=False)
    # vng alone: the pip line for this Python, with nothing before it (it said " ; python3 -m pip ...").
    vng = [check_tool(Tool("vng", ("no-such-vng-xyz",), (), why="boots level 1"), Runner(Path("/tmp/doctor-logs")))]
    assert install_fix(vng, debian_like=True) == f"{sys.executable} -m pip install virtme-ng"
    both = install_fix(missing + vng, debian_like=True)
    assert both.endswith(f"apt-get install -y ghost-pkg ; {sys.executable} -m pip install virtme-ng")
    assert "apt-get" not in other.split("(Debian calls")[0] and "ghost (haunting)" in other and "--container" in other


def test_the_doctor_does_not_ask_for_what_the_lab_builds_itself() -> None:
    names = {t.name for t in TOOLS}
    assert "bpftool" not in names and "libbpf" not in names  # bpf/Makefile builds both from the kernel tree
    assert "zlib" in names  # which they need
