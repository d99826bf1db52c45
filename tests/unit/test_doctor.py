from __future__ import annotations

import shutil
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
