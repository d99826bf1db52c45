from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.lockfile import load_lock, parse_lock, sha256_file, verify_sha256
from lab.paths import LOCK_FILE

GOOD = """
[source]
kind = "tarball"
version = "6.12.1"
url = "/tmp/linux.tar.xz"
sha256 = "%s"
[build]
timestamp = "Thu Jan  1 00:00:00 UTC 2025"
user = "u"
host = "h"
"""


def test_repo_lock_parses_and_pins_debian_source() -> None:
    lock = load_lock(LOCK_FILE)
    assert lock.source.kind == "debian"
    assert lock.source.package == "linux-source-6.12"
    assert len(lock.source.sha256) == 64
    env = lock.build.env()
    assert env["KBUILD_BUILD_VERSION"] == "1"
    assert env["KBUILD_BUILD_USER"] == lock.build.user


def test_tarball_lock_identity_uses_checksum() -> None:
    lock = parse_lock(GOOD % ("ab" * 32))
    assert lock.source.identity() == "tarball:sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (GOOD % "xyz", "not a sha256"),
        (GOOD.replace('kind = "tarball"', 'kind = "svn"') % ("ab" * 32), "unknown source kind"),
        (GOOD.replace('url = "/tmp/linux.tar.xz"\n', "") % ("ab" * 32), "'url'"),
        ("[source]\nkind='git'", "needs a [source] and a [build]"),
        ("not toml = = =", "not valid TOML"),
    ],
)
def test_bad_locks_say_what_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(LabError, match=re.escape(needle)):
        parse_lock(text)


def test_checksum_mismatch_names_file_and_fix(tmp_path: Path) -> None:
    f = tmp_path / "linux.tar.xz"
    f.write_bytes(b"kernel")
    verify_sha256(f, sha256_file(f), "tarball")  # matching sum passes
    with pytest.raises(LabError) as exc:
        verify_sha256(f, "0" * 64, "tarball")
    assert str(f) in exc.value.message
    assert exc.value.fix is not None and sha256_file(f) in exc.value.fix
