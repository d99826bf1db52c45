"""`nox -s source_check`: every place kernel/source.lock says the pinned
source is, tried from this machine: apt by name, each pool path under each
mirror apt uses, the snapshot archive. Each is downloaded and checked
against the pinned sha256; the table says which work, which are unreachable
from here, and which are skipped (and why)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.table import Table

from lab import ui
from lab.apt_sources import apt_uris
from lab.lockfile import SourceLock, sha256_file
from lab.runner import Runner
from lab.source import apt_download, deb_name
from lab.source_locations import Attempt, fetch_verified


def check_apt(runner: Runner, src: SourceLock, into: Path) -> Attempt:
    result = apt_download(runner, src, into)
    deb = into / deb_name(src)
    if not result.ok or not deb.exists():
        last = result.output.strip().splitlines()[-1] if result.output.strip() else f"exit status {result.returncode}"
        return Attempt("apt", False, f"unreachable: {last}", result.seconds)
    actual = sha256_file(deb)
    ok = actual == src.package_sha256
    return Attempt("apt", ok, "sha256 matches" if ok else f"sha256 {actual[:16]}..., not the pinned one", result.seconds)


def source_check(runner: Runner, src: SourceLock) -> int:
    """0 when at least one location gives the pinned file, 1 otherwise."""
    if src.kind != "debian":
        ui.info(f"the lock's source is of kind {src.kind}: nothing to check beyond its own sha256")
        return 0
    with tempfile.TemporaryDirectory(prefix="pvsched-source-check-") as tmp:
        attempts = [check_apt(runner, src, Path(tmp))]
        attempts += fetch_verified(src.locations, apt_uris(), src.package_sha256, Path(tmp) / "candidate.deb", stop_at_first=False)
    table = Table(title=f"where {src.package}={src.package_version} is")
    for col in ("location", "result", "seconds"):
        table.add_column(col)
    for a in attempts:
        result = f"[green]ok[/]: {a.why}" if a.ok else (f"[yellow]{a.why}[/]" if a.why.startswith("skipped") else f"[red]{a.why}[/]")
        table.add_row(a.where, result, f"{a.seconds:.0f}")
    ui.console.print(table)
    good = sum(a.ok for a in attempts)
    print(f"source check: {good} of {len(attempts)} locations give the pinned file", flush=True)
    return 0 if good else 1
