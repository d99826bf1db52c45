"""Source handling on a toy "kernel" tarball: real tar, real git, no network."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.lockfile import parse_lock, sha256_file
from lab.runner import Runner
from lab.source import SourceManager, read_series

LOCK = """
[source]
kind = "tarball"
version = "0.1"
url = "{url}"
sha256 = "{sha}"
[build]
timestamp = "Thu Jan  1 00:00:00 UTC 2025"
user = "lab"
host = "lab"
"""

PATCH = """\
From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: Lab <lab@example.invalid>
Date: Wed, 1 Jan 2025 00:00:00 +0000
Subject: [PATCH] sched: say hello

---
 kernel/sched.c | 1 +
 1 file changed, 1 insertion(+)

diff --git a/kernel/sched.c b/kernel/sched.c
--- a/kernel/sched.c
+++ b/kernel/sched.c
@@ -1 +1,2 @@
 int {old};
+int hello;
--
2.39.5
"""


def make_tarball(tmp: Path) -> Path:
    src = tmp / "linux-0.1"
    (src / "kernel").mkdir(parents=True)
    (src / "kernel" / "sched.c").write_text("int sched;\n")
    (src / "Makefile").write_text("all:\n")
    tarball = tmp / "linux-0.1.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(src, arcname="linux-0.1")
    return tarball


def manager(tmp: Path, runner: Runner, sha: str | None = None) -> SourceManager:
    tarball = make_tarball(tmp)
    lock = parse_lock(LOCK.format(url=tarball, sha=sha or sha256_file(tarball)))
    return SourceManager(tmp / "cache", runner, lock)


def write_series(patch_dir: Path, old: str) -> None:
    patch_dir.mkdir(exist_ok=True)
    (patch_dir / "0001-hello.patch").write_text(PATCH.replace("{old}", old))
    (patch_dir / "series").write_text("# our series\n0001-hello.patch\n")


def test_series_applies_one_commit_per_patch(tmp_path: Path, runner: Runner) -> None:
    patches = tmp_path / "patches"
    write_series(patches, "sched")
    tree = manager(tmp_path, runner).prepare(patches)
    assert (tree.path / "kernel" / "sched.c").read_text() == "int sched;\nint hello;\n"
    log = subprocess.run(["git", "-C", tree.path, "log", "--format=%s", f"{tree.base}..{tree.head}"],
                         capture_output=True, text=True, check=True).stdout.split("\n")  # fmt: skip
    assert log[0] == "sched: say hello"
    assert tree.patches == ("0001-hello.patch",)


def test_same_inputs_give_same_commits_and_reuse(tmp_path: Path, runner: Runner) -> None:
    patches = tmp_path / "patches"
    write_series(patches, "sched")
    mgr = manager(tmp_path, runner)
    first = mgr.prepare(patches)
    applied = len(list(runner.log_dir.glob("*git-am-*")))
    second = mgr.prepare(patches)
    assert first == second
    # No patch change: the second prepare checks out the tagged series, no new `git am`.
    assert applied == 1
    assert len(list(runner.log_dir.glob("*git-am-*"))) == applied


def test_empty_series_is_the_base(tmp_path: Path, runner: Runner) -> None:
    patches = tmp_path / "patches"
    patches.mkdir()
    tree = manager(tmp_path, runner).prepare(patches)
    assert tree.head == tree.base


def test_patch_that_does_not_apply_is_named(tmp_path: Path, runner: Runner) -> None:
    patches = tmp_path / "patches"
    write_series(patches, "something_else")
    with pytest.raises(LabError) as exc:
        manager(tmp_path, runner).prepare(patches)
    assert "0001-hello.patch" in exc.value.message and "does not apply" in exc.value.message
    assert exc.value.fix and "format-patch" in exc.value.fix


def test_checksum_mismatch_stops_before_unpacking(tmp_path: Path, runner: Runner) -> None:
    with pytest.raises(LabError, match="checksum mismatch") as exc:
        manager(tmp_path, runner, sha="0" * 64).prepare(tmp_path)
    assert str(tmp_path / "linux-0.1.tar.gz") in exc.value.message  # where it came from
    assert exc.value.fix and f'sha256 = "{sha256_file(tmp_path / "linux-0.1.tar.gz")}"' in exc.value.fix
    assert not (tmp_path / "cache" / "src").exists()
    # Nothing under the pinned name, nothing half-written: a rerun fetches again.
    assert list((tmp_path / "cache" / "downloads").iterdir()) == []


def test_a_good_fetch_is_kept_under_the_pinned_name(tmp_path: Path, runner: Runner) -> None:
    tarball = manager(tmp_path, runner).fetch_tarball()
    assert tarball.read_bytes() == (tmp_path / "linux-0.1.tar.gz").read_bytes()
    assert [p.name for p in tarball.parent.iterdir()] == [tarball.name]


def test_series_naming_a_missing_patch(tmp_path: Path) -> None:
    (tmp_path / "series").write_text("0001-gone.patch\n")
    with pytest.raises(LabError, match="0001-gone.patch"):
        read_series(tmp_path)


def _head(tree: Path) -> str:
    return subprocess.run(["git", "-C", tree, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def test_a_build_holding_the_tree_keeps_another_run_from_checking_out(tmp_path: Path, runner: Runner) -> None:
    import threading

    patches = tmp_path / "patches"
    write_series(patches, "sched")
    mgr = manager(tmp_path, runner)
    patched = mgr.prepare(patches)
    other_run = threading.Thread(target=mgr.prepare, args=(None,))  # wants the bare base
    with mgr.held(patched):
        other_run.start()
        other_run.join(timeout=1.0)
        assert other_run.is_alive(), "another series was checked out under a build"
        assert _head(patched.path) == patched.head
    other_run.join(timeout=10)
    assert not other_run.is_alive()
    assert _head(patched.path) == patched.base


def test_holding_a_tree_another_run_moved_checks_it_out_again(tmp_path: Path, runner: Runner) -> None:
    patches = tmp_path / "patches"
    write_series(patches, "sched")
    mgr = manager(tmp_path, runner)
    patched = mgr.prepare(patches)
    mgr.prepare(None)  # another run, between this run's prepare and its build
    with mgr.held(patched):
        assert _head(patched.path) == patched.head
        assert (patched.path / "kernel" / "sched.c").read_text() == "int sched;\nint hello;\n"
