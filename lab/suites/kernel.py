"""`nox -s kernel`: the shared steps up to the kernels; with
`--check-reproducible` two cold builds that must give the cached bzImage;
with `--check-series` each patch built on its own, with KVM built in and
as a module."""

from __future__ import annotations

from lab import ui
from lab.build import KernelBuild, ReproBuild
from lab.cache import Store
from lab.ktap import Case
from lab.pipeline import Pipeline
from lab.source import SourceTree

SERIES_VARIANTS = ("kvm-builtin", "kvm-module")


def run(pipe: Pipeline, reproducible: bool, series: str | None = None) -> int:
    """`series`: "both", one of SERIES_VARIANTS, or None for no series check."""

    def suite(tree: SourceTree, builds: dict[str, KernelBuild]) -> None:
        if reproducible:
            check_reproducible(pipe, tree, builds)
        if series:
            check_series(pipe, tree, builds, SERIES_VARIANTS if series == "both" else (series,))

    return pipe.run_suite(suite)


def kvm_as_module(config: str) -> str:
    """The same config with KVM and its vendor modules as modules."""
    swap = {f"CONFIG_{name}=y": f"CONFIG_{name}=m" for name in ("KVM", "KVM_AMD", "KVM_INTEL")}
    return "\n".join(swap.get(line, line) for line in config.splitlines()) + "\n"


def check_series(pipe: Pipeline, tree: SourceTree, builds: dict[str, KernelBuild], variants: tuple[str, ...] = SERIES_VARIANTS) -> None:
    """`git rebase --exec` builds after each patch; KVM built in, then as a module."""
    with pipe.step("check series"):
        config = (builds["host"].entry / "config").read_text()
        configs = {"kvm-builtin": config, "kvm-module": kvm_as_module(config)}
        for variant in variants:
            cfg = configs[variant]
            ok, detail = pipe.builder().check_series(tree, variant, cfg)
            ui.info(f"series: {detail}")
            pipe.record.cases.append(Case(f"series_builds_patch_by_patch_{variant.replace('-', '_')}", "host",
                                          "passed" if ok else "failed", detail))  # fmt: skip


def check_reproducible(pipe: Pipeline, tree: SourceTree, builds: dict[str, KernelBuild]) -> None:
    """A cold build (no ccache) twice, from the source at two paths into two
    directories: the same bzImage as the cached one, the same modules."""
    with pipe.step("check reproducible"):
        config = (builds["host"].entry / "config").read_text()
        cached = str(Store.read_meta(builds["host"].entry)["bzimage_sha256"])
        fresh = pipe.builder().check_reproducible(tree, config)
        ok, detail = compare_repro(fresh, cached)
        pipe.record.reproducible = {
            "builds": [{"source": str(b.source), "dir": b.build_dir, "bzimage_sha256": b.bzimage_sha256,
                        "modules": len(b.modules), "seconds": round(b.seconds, 1)} for b in fresh],
            "cached_bzimage_sha256": cached,
            "identical": ok,
        }  # fmt: skip
        ui.info(f"reproducibility: {detail}")
        pipe.record.cases.append(Case("reproducible_bzimage", "host", "passed" if ok else "failed", detail))


def compare_repro(fresh: list[ReproBuild], cached: str) -> tuple[bool, str]:
    """Every bzImage equal to the cached one, every build with the same modules."""
    parts = [f"{b.source} -> {b.build_dir}: {b.bzimage_sha256[:16]}, {len(b.modules)} modules, {b.seconds:.0f} s cold"
             for b in fresh]  # fmt: skip
    parts.append(f"cached ccache build: {cached[:16]}")
    ok = len(fresh) >= 2 and {b.bzimage_sha256 for b in fresh} == {cached}
    first = fresh[0].modules if fresh else {}
    if not first:
        ok = False
        parts.append("no modules built")
    for b in fresh[1:]:
        differ = sorted(k for k in first.keys() | b.modules.keys() if first.get(k) != b.modules.get(k))
        if differ:
            ok = False
            parts.append(f"{len(differ)} modules differ in {b.build_dir}: {', '.join(differ[:3])}")
    return ok, "; ".join(parts)
