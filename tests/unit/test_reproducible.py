"""The reproducibility check's judgement: bzImages and modules from two
source paths and build directories must agree with the cached build."""

from __future__ import annotations

from pathlib import Path

from lab.build import ReproBuild
from lab.suites.kernel import compare_repro

MODS = {"drivers/a.ko": "1" * 64, "fs/b.ko": "2" * 64}


def build(src: str, bz: str = "f" * 64, mods: dict[str, str] | None = None) -> ReproBuild:
    return ReproBuild(src, f"{src}-build", bz, dict(MODS if mods is None else mods), 600.0)


def test_equal_builds_pass() -> None:
    ok, detail = compare_repro([build("/a"), build("/elsewhere")], "f" * 64)
    assert ok, detail


def test_a_bzimage_that_differs_fails() -> None:
    ok, _ = compare_repro([build("/a"), build("/elsewhere", bz="e" * 64)], "f" * 64)
    assert not ok


def test_builds_that_differ_from_the_cached_one_fail() -> None:
    ok, _ = compare_repro([build("/a"), build("/elsewhere")], "e" * 64)
    assert not ok


def test_a_module_that_differs_fails_and_is_named() -> None:
    ok, detail = compare_repro([build("/a"), build("/elsewhere", mods={**MODS, "fs/b.ko": "3" * 64})], "f" * 64)
    assert not ok and "fs/b.ko" in detail


def test_a_missing_module_fails() -> None:
    ok, detail = compare_repro([build("/a"), build("/elsewhere", mods={"drivers/a.ko": "1" * 64})], "f" * 64)
    assert not ok and "fs/b.ko" in detail


def test_no_modules_or_one_build_is_no_evidence() -> None:
    assert not compare_repro([build("/a", mods={}), build("/elsewhere", mods={})], "f" * 64)[0]
    assert not compare_repro([build("/a")], "f" * 64)[0]


def test_both_the_build_directory_and_the_source_tree_are_mapped_out_of_debug_info() -> None:
    from pathlib import Path

    from lab.build import KernelBuilder

    flags = KernelBuilder.extra_flags(Path("/c/build/default-host"), Path("/c/src/linux"))
    for var in ("KCFLAGS", "KAFLAGS"):
        (value,) = [f.split("=", 1)[1] for f in flags if f.startswith(var + "=")]
        assert "-fdebug-prefix-map=/c/build/default-host=." in value.split()
        assert "-fdebug-prefix-map=/c/src/linux/=./" in value.split()


def test_an_external_module_directory_is_mapped_to_a_fixed_name() -> None:
    from pathlib import Path

    from lab.build import KernelBuilder

    a = KernelBuilder.extra_flags(Path("/b"), Path("/s"), Path("/c/guest/x.tmp-1"))
    b = KernelBuilder.extra_flags(Path("/b"), Path("/s"), Path("/d/guest/y.tmp-2"))
    assert "-fdebug-prefix-map=/c/guest/x.tmp-1=./module" in a[0].split()
    assert [f.replace("/c/guest/x.tmp-1", "M") for f in a] == [f.replace("/d/guest/y.tmp-2", "M") for f in b]


def test_ccache_is_not_given_a_base_directory(tmp_path: Path) -> None:
    """ccache's base_dir rewrites absolute paths to relative ones for the
    compiler, and the debug prefix maps then miss them: a ccache build's
    bzImage differed from a cold build's."""
    from lab.build import KernelBuilder
    from lab.lockfile import load_lock
    from lab.paths import LOCK_FILE
    from lab.runner import Runner

    builder = KernelBuilder(tmp_path, Runner(tmp_path / "logs"), load_lock(LOCK_FILE))
    env = builder.env()
    assert "CCACHE_BASEDIR" not in env and env["CCACHE_DIR"].startswith(str(tmp_path))
