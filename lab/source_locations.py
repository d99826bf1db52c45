"""Where the pinned .deb can come from besides apt, and fetching it from there.

Each location of kernel/source.lock becomes candidate URLs: a pool path
under every mirror this machine's apt uses, or a file of Debian's snapshot
archive by its sha1 (base URL from PVSCHED_LAB_SNAPSHOT_URL). A candidate
counts only when the file it gives has the pinned sha256.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.lockfile import SourceLocation, sha256_file

SNAPSHOT_ENV = "PVSCHED_LAB_SNAPSHOT_URL"


@dataclass(frozen=True)
class Attempt:
    where: str  # the location and, once known, the URL
    ok: bool
    why: str = ""
    seconds: float = 0.0


def candidate_urls(loc: SourceLocation, mirrors: list[str], environ: dict[str, str] | None = None) -> tuple[list[str], str]:
    """(URLs to try, why there are none)."""
    env = os.environ if environ is None else environ
    if loc.kind == "pool":
        urls = [f"{m.rstrip('/')}/{urllib.parse.quote(loc.path)}" for m in mirrors]
        return urls, "" if urls else "this machine's apt names no http(s) mirror"
    base = env.get(SNAPSHOT_ENV, "").rstrip("/")
    if not base:
        return [], f"{SNAPSHOT_ENV} is not set (the base URL of Debian's snapshot archive)"
    return [f"{base}/file/{loc.sha1}"], ""


def download(url: str, dest: Path, timeout: float = 60.0) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as resp, dest.open("wb") as out:
        shutil.copyfileobj(resp, out)


def fetch_verified(
    locations: tuple[SourceLocation, ...],
    mirrors: list[str],
    sha256: str,
    dest: Path,
    get: Callable[[str, Path], None] = download,
    stop_at_first: bool = True,
) -> list[Attempt]:
    """Try every candidate in order; a file with the pinned sha256 ends up at
    `dest` (the first one, unless `stop_at_first` is False: then every
    candidate is tried and `dest` holds the last good one). A mismatch or a
    failed download leaves nothing behind."""
    attempts: list[Attempt] = []
    tmp = dest.with_name(dest.name + ".partial")
    for loc in locations:
        urls, none_why = candidate_urls(loc, mirrors)
        if not urls:
            attempts.append(Attempt(loc.describe(), False, f"skipped: {none_why}"))
        for url in urls:
            start = time.monotonic()
            try:
                get(url, tmp)
            except OSError as exc:
                attempts.append(Attempt(url, False, f"unreachable: {exc}", time.monotonic() - start))
                tmp.unlink(missing_ok=True)
                continue
            actual = sha256_file(tmp)
            if actual != sha256:
                attempts.append(Attempt(url, False, f"sha256 {actual[:16]}..., not the pinned {sha256[:16]}...", time.monotonic() - start))
                tmp.unlink(missing_ok=True)
                continue
            os.replace(tmp, dest)
            attempts.append(Attempt(url, True, "sha256 matches", time.monotonic() - start))
            if stop_at_first:
                return attempts
    return attempts
