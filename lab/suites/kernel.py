"""`nox -s kernel`: the shared steps up to the kernels; with
`--check-reproducible` two cold builds that must give the cached bzImage;
with `--check-series` each patch built on its own, with KVM built in and
as a module."""

from __future__ import annotations

from lab import ui
from lab.build import KernelBuild
from lab.cache import Store
from lab.ktap import Case
from lab.pipeline import Pipeline
from lab.source import SourceTree


def run(pipe: Pipeline, reproducible: bool, series: bool = False) -> int:
    def suite(tree: SourceTree, builds: dict[str, KernelBuild]) -> None:
        if reproducible:
            check_reproducible(pipe, tree, builds)
        if series:
            check_series(pipe, tree, builds)

    return pipe.run_suite(suite)


def kvm_as_module(config: str) -> str:
    """The same config with KVM and its vendor modules as modules."""
    swap = {f"CONFIG_{name}=y": f"CONFIG_{name}=m" for name in ("KVM", "KVM_AMD", "KVM_INTEL")}
    return "\n".join(swap.get(line, line) for line in config.splitlines()) + "\n"


def check_series(pipe: Pipeline, tree: SourceTree, builds: dict[str, KernelBuild]) -> None:
    """`git rebase --exec` builds after each patch; KVM built in, then as a module."""
    with pipe.step("check series"):
        config = (builds["host"].entry / "config").read_text()
        for variant, cfg in (("kvm-builtin", config), ("kvm-module", kvm_as_module(config))):
            ok, detail = pipe.builder().check_series(tree, variant, cfg)
            ui.info(f"series: {detail}")
            pipe.record.cases.append(Case(f"series_builds_patch_by_patch_{variant.replace('-', '_')}", "host",
                                          "passed" if ok else "failed", detail))  # fmt: skip


def check_reproducible(pipe: Pipeline, tree: SourceTree, builds: dict[str, KernelBuild]) -> None:
    """A cold build (no ccache) twice, in fresh directories: the same bzImage as the cached one."""
    with pipe.step("check reproducible"):
        config = (builds["host"].entry / "config").read_text()
        cached = str(Store.read_meta(builds["host"].entry)["bzimage_sha256"])
        fresh = pipe.builder().check_reproducible(tree, config)
        hashes = {h for _, h, _ in fresh} | {cached}
        detail = "; ".join(f"{d}: {h[:16]} in {s:.0f} s (cold, no ccache)" for d, h, s in fresh)
        detail += f"; cached ccache build: {cached[:16]}"
        pipe.record.reproducible = {
            "builds": [{"dir": d, "bzimage_sha256": h, "seconds": round(s, 1)} for d, h, s in fresh],
            "cached_bzimage_sha256": cached,
            "identical": len(hashes) == 1,
        }
        ui.info(f"reproducibility: {detail}")
        pipe.record.cases.append(Case("reproducible_bzimage", "host", "passed" if len(hashes) == 1 else "failed", detail))
