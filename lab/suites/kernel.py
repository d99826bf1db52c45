"""`nox -s kernel`: the shared steps up to the kernels, and with
`--check-reproducible` two cold builds that must give the cached bzImage."""

from __future__ import annotations

from lab import ui
from lab.build import KernelBuild
from lab.cache import Store
from lab.ktap import Case
from lab.pipeline import Pipeline
from lab.source import SourceTree


def run(pipe: Pipeline, reproducible: bool) -> int:
    return pipe.run_suite(lambda tree, builds: check_reproducible(pipe, tree, builds) if reproducible else None)


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
