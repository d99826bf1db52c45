"""Where else the pinned .deb is: the lock's locations, their URLs, and a
fetch that keeps only a file with the pinned sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lab.apt_sources import apt_uris
from lab.errors import LabError
from lab.lockfile import SourceLocation, parse_lock
from lab.source_locations import SNAPSHOT_ENV, candidate_urls, fetch_verified

GOOD = b"the pinned package"
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()
POOL = SourceLocation("pool", path="pool/updates/main/l/linux-6.12/linux-source-6.12_6.12.117-1~deb12u1_all.deb")
SNAP = SourceLocation("snapshot", sha1="221d82478a259628d6016602b619a484e71e9424")

LOCK = """
[source]
kind = "debian"
version = "6.12.117"
package = "linux-source-6.12"
package_version = "6.12.117-1~deb12u1"
package_sha256 = "{sha}"
member = "./usr/src/linux-source-6.12.tar.xz"
sha256 = "{sha}"
{locations}
[build]
timestamp = "t"
user = "u"
host = "h"
"""


def lock_with(locations: str) -> str:
    return LOCK.format(sha="a" * 64, locations=locations)


def test_the_repositorys_lock_names_a_pool_path_and_a_snapshot_file() -> None:
    from lab.lockfile import load_lock
    from lab.paths import LOCK_FILE

    kinds = [loc.kind for loc in load_lock(LOCK_FILE).source.locations]
    assert kinds == ["pool", "snapshot"]


def test_locations_parse_and_bad_ones_are_refused() -> None:
    src = parse_lock(lock_with('[[source.locations]]\nkind = "pool"\npath = "pool/x.deb"\n')).source
    assert src.locations == (SourceLocation("pool", path="pool/x.deb"),)
    for bad in ('kind = "ftp"\npath = "x"', 'kind = "pool"\npath = "/abs/x.deb"', 'kind = "pool"\npath = "http://h/x.deb"',
                'kind = "pool"\npath = "pool/../x"', 'kind = "snapshot"\nsha1 = "123"'):  # fmt: skip
        with pytest.raises(LabError):
            parse_lock(lock_with(f"[[source.locations]]\n{bad}\n"))


def test_pool_paths_go_under_every_apt_mirror() -> None:
    urls, why = candidate_urls(POOL, ["http://m1.example/debian-security/", "http://m2.example/debian"])
    assert why == "" and urls == [
        "http://m1.example/debian-security/pool/updates/main/l/linux-6.12/linux-source-6.12_6.12.117-1~deb12u1_all.deb",
        "http://m2.example/debian/pool/updates/main/l/linux-6.12/linux-source-6.12_6.12.117-1~deb12u1_all.deb",
    ]
    assert candidate_urls(POOL, [])[0] == []


def test_the_snapshot_needs_its_base_url_from_the_environment() -> None:
    urls, why = candidate_urls(SNAP, [], environ={})
    assert urls == [] and SNAPSHOT_ENV in why
    urls, _ = candidate_urls(SNAP, [], environ={SNAPSHOT_ENV: "https://snap.example/"})
    assert urls == ["https://snap.example/file/221d82478a259628d6016602b619a484e71e9424"]


def test_only_a_file_with_the_pinned_hash_is_kept(tmp_path: Path) -> None:
    served = {"http://down.example/debian/pool/updates/main/l/linux-6.12/linux-source-6.12_6.12.117-1~deb12u1_all.deb": None,
              "http://evil.example/debian/pool/updates/main/l/linux-6.12/linux-source-6.12_6.12.117-1~deb12u1_all.deb": b"tampered",
              "http://good.example/debian/pool/updates/main/l/linux-6.12/linux-source-6.12_6.12.117-1~deb12u1_all.deb": GOOD}  # fmt: skip
    got: list[str] = []

    def get(url: str, dest: Path) -> None:
        got.append(url)
        body = served[url]
        if body is None:
            raise OSError("connection refused")
        dest.write_bytes(body)

    dest = tmp_path / "x.deb"
    mirrors = ["http://down.example/debian", "http://evil.example/debian", "http://good.example/debian"]
    attempts = fetch_verified((POOL,), mirrors, GOOD_SHA, dest, get)
    assert [a.ok for a in attempts] == [False, False, True]
    assert "unreachable" in attempts[0].why and "not the pinned" in attempts[1].why
    assert dest.read_bytes() == GOOD and not dest.with_name("x.deb.partial").exists()
    # Nothing good anywhere: nothing left behind.
    dest.unlink()
    attempts = fetch_verified((POOL, SNAP), mirrors[:2], GOOD_SHA, dest, get)
    assert not any(a.ok for a in attempts) and not dest.exists() and not dest.with_name("x.deb.partial").exists()
    assert attempts[-1].why.startswith("skipped")


def test_apt_uris_reads_both_formats_in_order(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text("Types: deb\nURIs: http://a.example/debian\n\nTypes: deb\nURIs: http://b.example/debian-security\n")
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://c.example/debian bookworm main\ndeb cdrom:/x stable main\n")
    assert apt_uris((tmp_path / "sources.list", d)) == [
        "http://c.example/debian",
        "http://a.example/debian",
        "http://b.example/debian-security",
    ]
