"""Image inputs, engine command lines and errors, without an engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import container
from lab.apt_sources import debian_mirror as host_mirror
from lab.container import Engine, image_tag, read_packages
from lab.errors import LabError
from lab.runner import Runner


def test_repo_package_list_is_fully_pinned() -> None:
    pkgs = read_packages()
    names = {p.split("=")[0] for p in pkgs}
    # the tools the lab's doctor requires are in the image
    assert {"clang-19", "pahole", "bpftool", "qemu-system-x86", "virtme-ng", "busybox-static", "rt-tests", "stress-ng"} <= names
    assert all("=" in p for p in pkgs)


def test_unpinned_package_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "packages.txt"
    f.write_text("# comment\nmake=4.4.1-2\nclang-19\n")
    with pytest.raises(LabError, match="clang-19"):
        read_packages(f)


def test_image_tag_follows_inputs(tmp_path: Path) -> None:
    a, b = tmp_path / "packages.txt", tmp_path / "Containerfile"
    a.write_text("make=1\n")
    b.write_text("FROM x\n")
    first = image_tag((a, b))
    assert first == image_tag((a, b))
    a.write_text("make=2\n")
    assert image_tag((a, b)) != first
    assert first.startswith("localhost/pvsched-lab:")


def test_host_mirror_from_deb822_and_one_line_sources(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: x-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    assert host_mirror((tmp_path / "none.list", d)) == "http://mirror.example/debian"
    one = tmp_path / "sources.list"
    one.write_text("deb [arch=amd64] http://other.example/debian bookworm main\n")
    assert host_mirror((one,)) == "http://other.example/debian"
    (tmp_path / "ubuntu.list").write_text("deb http://archive.example/ubuntu noble main\n")
    assert host_mirror((tmp_path / "ubuntu.list",)) is None


def test_podman_uses_the_labs_config() -> None:
    assert Engine("podman").env["CONTAINERS_CONF"].endswith("images/podman-containers.conf")
    assert Engine("docker").env == {}
    conf = Path(Engine("podman").env["CONTAINERS_CONF"]).read_text()
    assert 'runtime = "runc"' in conf and "default_ulimits = []" in conf


def test_missing_engine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(container.shutil, "which", lambda name: None)
    with pytest.raises(LabError, match="no working container engine") as exc:
        container.detect(Runner(tmp_path / "logs"))
    assert "apt-get install -y podman" in str(exc.value)


def test_the_image_reads_the_snapshot_archive_at_the_pins_time_when_one_is_named(tmp_path: Path) -> None:
    stamp = container.snapshot_stamp()
    assert len(stamp) == 16 and stamp.endswith("Z")
    line, what = container.apt_source("http://mirror.example/debian", {"PVSCHED_LAB_SNAPSHOT_URL": "http://snap.example/"})
    assert line == f"deb [check-valid-until=no] http://snap.example/archive/debian/{stamp}/ trixie main"
    assert stamp in what
    # Without one: this host's mirror, said to be the live archive.
    line, what = container.apt_source("http://mirror.example/debian", {})
    assert line == "deb http://mirror.example/debian trixie main" and "live archive" in what
    with pytest.raises(LabError, match="no Debian mirror") as exc:
        container.apt_source(None, {})
    assert "PVSCHED_LAB_SNAPSHOT_URL" in str(exc.value.fix)
    # A package list without its time cannot name a snapshot.
    unstamped = tmp_path / "packages.txt"
    unstamped.write_text("make=4.4.1-2\n")
    with pytest.raises(LabError, match="snapshot"):
        container.apt_source(None, {"PVSCHED_LAB_SNAPSHOT_URL": "http://snap.example"}, unstamped)


def test_the_containerfile_reads_the_same_snapshot_when_given_one() -> None:
    text = container.CONTAINERFILE.read_text()
    assert "ARG SNAPSHOT_URL=" in text and "ARG SNAPSHOT_STAMP=" in text
    assert "%s/archive/debian/%s/" in text and "Check-Valid-Until: no" in text
