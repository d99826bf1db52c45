"""The pinned kernel source: parsing kernel/source.lock and checking sums."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError

KINDS = ("debian", "tarball", "git")


@dataclass(frozen=True)
class BuildIdentity:
    """KBUILD_BUILD_* values, fixed so builds are reproducible."""

    timestamp: str
    user: str
    host: str

    def env(self) -> dict[str, str]:
        return {
            "KBUILD_BUILD_TIMESTAMP": self.timestamp,
            "KBUILD_BUILD_USER": self.user,
            "KBUILD_BUILD_HOST": self.host,
            # Without this init/Makefile bumps "#N" on every build.
            "KBUILD_BUILD_VERSION": "1",
        }


LOCATION_KINDS = ("pool", "snapshot")


@dataclass(frozen=True)
class SourceLocation:
    """Another place the pinned .deb is, tried when apt cannot give it.

    pool: `path` under each Debian mirror this machine's apt uses (works
    without apt lists); snapshot: the file by its `sha1` in Debian's snapshot
    archive, which keeps every file it ever published (base URL from
    PVSCHED_LAB_SNAPSHOT_URL: no archive host is written in the repo)."""

    kind: str
    path: str = ""
    sha1: str = ""

    def describe(self) -> str:
        return f"{self.kind}:{self.path or self.sha1}"


@dataclass(frozen=True)
class SourceLock:
    kind: str
    version: str
    sha256: str = ""  # tarball checksum (debian, tarball)
    package: str = ""
    package_version: str = ""
    package_sha256: str = ""
    member: str = ""  # path of the tarball inside the .deb
    url: str = ""  # tarball: http(s) URL or local path
    git: str = ""  # git: path of a local kernel tree
    ref: str = ""  # git: commit, tag or branch
    locations: tuple[SourceLocation, ...] = ()  # debian: where else the .deb is

    def identity(self) -> str:
        """What makes two sources the same, for cache keys."""
        if self.kind == "git":
            return f"git:{self.git}@{self.ref}"
        return f"{self.kind}:sha256:{self.sha256}"


@dataclass(frozen=True)
class Lock:
    source: SourceLock
    build: BuildIdentity


def _need(table: dict[str, object], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise LabError(
            f"{where}: missing or empty string field '{key}'",
            fix=f'add `{key} = "..."` to {where}',
        )
    return value


def _check_sha(value: str, where: str) -> str:
    value = value.lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise LabError(f"{where}: '{value}' is not a sha256 (64 hex digits)")
    return value


def _locations(raw: object, where: str) -> tuple[SourceLocation, ...]:
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise LabError(f"{where}: `locations` must be [[source.locations]] tables")
    found = []
    for i, table in enumerate(raw, 1):
        w = f"{where} location {i}"
        kind = _need(table, "kind", w)
        if kind == "pool":
            path = _need(table, "path", w)
            if path.startswith("/") or "://" in path or ".." in path.split("/"):
                raise LabError(f"{w}: path {path!r} must be relative to a mirror, e.g. pool/main/...")
            found.append(SourceLocation(kind, path=path))
        elif kind == "snapshot":
            sha1 = _need(table, "sha1", w).lower()
            if len(sha1) != 40 or any(c not in "0123456789abcdef" for c in sha1):
                raise LabError(f"{w}: '{sha1}' is not a sha1 (40 hex digits)")
            found.append(SourceLocation(kind, sha1=sha1))
        else:
            raise LabError(f"{w}: unknown location kind '{kind}'", fix=f"use one of {', '.join(LOCATION_KINDS)}")
    return tuple(found)


def parse_lock(text: str, where: str = "kernel/source.lock") -> Lock:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LabError(f"{where}: not valid TOML: {exc}") from exc
    src = data.get("source")
    build = data.get("build")
    if not isinstance(src, dict) or not isinstance(build, dict):
        raise LabError(f"{where}: needs a [source] and a [build] table")
    kind = _need(src, "kind", f"{where} [source]")
    if kind not in KINDS:
        raise LabError(f"{where}: unknown source kind '{kind}'", fix=f"use one of {', '.join(KINDS)}")
    w = f"{where} [source]"
    version = _need(src, "version", w)
    if kind == "debian":
        source = SourceLock(
            kind=kind,
            version=version,
            sha256=_check_sha(_need(src, "sha256", w), w),
            package=_need(src, "package", w),
            package_version=_need(src, "package_version", w),
            package_sha256=_check_sha(_need(src, "package_sha256", w), w),
            member=_need(src, "member", w),
            locations=_locations(src.get("locations", []), w),
        )
    elif kind == "tarball":
        source = SourceLock(kind=kind, version=version, sha256=_check_sha(_need(src, "sha256", w), w), url=_need(src, "url", w))
    else:
        source = SourceLock(kind=kind, version=version, git=_need(src, "git", w), ref=_need(src, "ref", w))
    wb = f"{where} [build]"
    identity = BuildIdentity(timestamp=_need(build, "timestamp", wb), user=_need(build, "user", wb), host=_need(build, "host", wb))
    return Lock(source=source, build=identity)


def load_lock(path: Path) -> Lock:
    if not path.exists():
        raise LabError(f"lock file {path} not found", fix="restore it with `git checkout kernel/source.lock`")
    return parse_lock(path.read_text(), str(path))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str, what: str) -> None:
    """Stop with the file name and the fix when a download is not what the lock pins."""
    actual = sha256_file(path)
    if actual != expected:
        raise LabError(
            f"checksum mismatch for {what} {path}: expected {expected}, got {actual}",
            fix=f'delete {path} to fetch it again; if the new file is intended, set sha256 = "{actual}" in kernel/source.lock',
        )
