from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from types import SimpleNamespace

from lab.build import KernelBuilder
from lab.cli import parser
from lab.runner import Runner
from lab.source import SourceTree
from lab.suites.kernel import SERIES_VARIANTS, check_series, kvm_as_module

MAKEFILE = """\
olddefconfig:
\t@grep -q CONFIG_KVM_PVSCHED=y $(O)/.config
vmlinux modules:
\t@test ! -f broken.c || (echo "broken.c:1: error: it does not compile"; exit 2)
"""


class NoLock:
    class build:  # noqa: N801 - the shape of Lock.build
        @staticmethod
        def env() -> dict[str, str]:
            return {}


def _tree(tmp: Path, breaks_at: int | None) -> SourceTree:
    """A git tree: a base commit with a kernel-shaped Makefile, three patches; one may break the build."""
    repo = tmp / "linux"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip

    git("init", "-q")
    (repo / "Makefile").write_text(MAKEFILE)
    git("add", "-A")
    git("commit", "-qm", "base")
    base = git("rev-parse", "HEAD")
    for i in (1, 2, 3):
        (repo / f"patch{i}.c").write_text("int x;\n")
        if i == breaks_at:
            (repo / "broken.c").write_text("oops\n")
        if breaks_at is not None and i == breaks_at + 1:
            (repo / "broken.c").unlink()  # the next patch repairs it: only a build per patch sees it
        git("add", "-A")
        git("commit", "-qm", f"patch {i}")
    return SourceTree(repo, base, git("rev-parse", "HEAD"), ("1", "2", "3"), "test")


def _builder(tmp: Path) -> KernelBuilder:
    return KernelBuilder(tmp / "cache", Runner(tmp / "logs"), NoLock(), jobs=1, use_ccache=False)  # type: ignore[arg-type]


def test_a_series_whose_every_patch_builds_passes(tmp_path: Path) -> None:
    ok, detail = _builder(tmp_path).check_series(_tree(tmp_path, None), "kvm-builtin", "CONFIG_KVM_PVSCHED=y\n")
    assert ok, detail
    assert "each of the 3 patches" in detail


def test_a_patch_that_breaks_the_build_is_named_even_if_a_later_one_repairs_it(tmp_path: Path) -> None:
    tree = _tree(tmp_path, breaks_at=2)
    ok, detail = _builder(tmp_path).check_series(tree, "kvm-builtin", "CONFIG_KVM_PVSCHED=y\n")
    assert not ok
    assert "after 'patch 2'" in detail and "it does not compile" in detail
    # The shared tree is left as it was: the worktree is gone, its HEAD unchanged.
    assert subprocess.run(["git", "-C", str(tree.path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() == tree.head
    assert not (tmp_path / "cache" / "series" / "kvm-builtin" / "tree").exists()


def test_kvm_as_a_module_changes_only_kvm() -> None:
    cfg = "CONFIG_KVM=y\nCONFIG_KVM_AMD=y\nCONFIG_KVM_PVSCHED=y\nCONFIG_KVM_PROVE_MMU=y\n"
    assert kvm_as_module(cfg) == "CONFIG_KVM=m\nCONFIG_KVM_AMD=m\nCONFIG_KVM_PVSCHED=y\nCONFIG_KVM_PROVE_MMU=y\n"


def test_a_series_option_that_olddefconfig_drops_fails_the_check(tmp_path: Path) -> None:
    # The fake kernel keeps what it is given; the wanted config names an option it then loses.
    tree = _tree(tmp_path, None)
    (tree.path / "Makefile").write_text(MAKEFILE.replace("\t@grep -q", "\t@sed -i /PVSCHED_GUEST_PREEMPT/d $(O)/.config; grep -q"))
    subprocess.run(["git", "-C", str(tree.path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "drops"], check=True)
    tree = SourceTree(tree.path, tree.base, subprocess.run(["git", "-C", str(tree.path), "rev-parse", "HEAD"], capture_output=True,
                      text=True, check=True).stdout.strip(), tree.patches, tree.identity)  # fmt: skip
    ok, detail = _builder(tmp_path).check_series(tree, "kvm-builtin", "CONFIG_KVM_PVSCHED=y\nCONFIG_PVSCHED_GUEST_PREEMPT=y\n")
    assert not ok
    assert "dropped ['CONFIG_PVSCHED_GUEST_PREEMPT=y']" in detail


class _Record:
    def __init__(self) -> None:
        self.cases: list[object] = []


class _SeriesPipe:
    """What check_series uses of a Pipeline: a step, a builder, the record."""

    def __init__(self) -> None:
        self.record = _Record()
        self.built: list[tuple[str, str]] = []

    def step(self, name: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def builder(self) -> _SeriesPipe:
        return self

    def check_series(self, tree: object, variant: str, config: str) -> tuple[bool, str]:
        self.built.append((variant, config))
        return True, variant


def test_check_series_builds_only_the_variants_asked(tmp_path: Path) -> None:
    entry = tmp_path / "host"
    entry.mkdir()
    (entry / "config").write_text("CONFIG_KVM=y\nCONFIG_KVM_AMD=y\n")
    builds = {"host": SimpleNamespace(entry=entry)}
    pipe = _SeriesPipe()
    check_series(pipe, None, builds, ("kvm-module",))  # type: ignore[arg-type]
    assert pipe.built == [("kvm-module", "CONFIG_KVM=m\nCONFIG_KVM_AMD=m\n")]
    assert [c.name for c in pipe.record.cases] == ["series_builds_patch_by_patch_kvm_module"]  # type: ignore[attr-defined]
    both = _SeriesPipe()
    check_series(both, None, builds, SERIES_VARIANTS)  # type: ignore[arg-type]
    assert [v for v, _ in both.built] == ["kvm-builtin", "kvm-module"]


def test_check_series_option_defaults_to_both_variants() -> None:
    assert parser().parse_args(["kernel", "--check-series"]).check_series == "both"
    assert parser().parse_args(["kernel", "--check-series", "kvm-module"]).check_series == "kvm-module"
    assert parser().parse_args(["kernel"]).check_series is None
