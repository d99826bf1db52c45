"""The lab's toolchain image, and the container runtime that runs commands in it.

Docker and podman sit behind one small interface (as in tuxmake); the image
is built from images/packages.txt either by the Containerfile (machines with
a registry) or by mmdebstrap + `import` (air-gapped machines), and tagged by
the hash of its inputs so a changed package list is a new image.
`container_runtime` gives the lab.runtime.Runtime of `--container`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lab import ui
from lab.apt_sources import debian_mirror
from lab.errors import LabError
from lab.paths import REPO, cache_dir
from lab.runner import Runner
from lab.runtime import IN_IMAGE_ENV, ContainerRuntime, DockerRuntime, PodmanRuntime
from lab.source_locations import SNAPSHOT_ENV

IMAGE_DIR = REPO / "images"
PACKAGES = IMAGE_DIR / "packages.txt"
CONTAINERFILE = IMAGE_DIR / "Containerfile"
PODMAN_CONF = IMAGE_DIR / "podman-containers.conf"
IMAGE_NAME = "localhost/pvsched-lab"
SUITE = "trixie"


def read_packages(path: Path = PACKAGES) -> list[str]:
    """`name=version` lines; comments and blank lines ignored; every line must be pinned."""
    pkgs = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]*=[A-Za-z0-9.+:~-]+", line):
            raise LabError(f"{path}: {line!r} is not a pinned `name=version`", fix="pin it: apt-cache policy NAME shows versions")
        pkgs.append(line)
    return pkgs


_SNAPSHOT_STAMP = re.compile(r"^#\s*snapshot:\s*(\d{8}T\d{6}Z)\s*$", re.MULTILINE)


def snapshot_stamp(path: Path = PACKAGES) -> str:
    """The time of Debian's snapshot archive the pins were taken from (`# snapshot:` in packages.txt)."""
    m = _SNAPSHOT_STAMP.search(path.read_text())
    if not m:
        raise LabError(f"{path} names no `# snapshot: YYYYMMDDTHHMMSSZ` line", fix="add the time the pins were taken from trixie")
    return m[1]


def apt_source(host_mirror: str | None, environ: Mapping[str, str] | None = None, path: Path = PACKAGES) -> tuple[str, str]:
    """(the apt line the mmdebstrap build reads, what it is): Debian's snapshot
    archive at the pins' time when PVSCHED_LAB_SNAPSHOT_URL names it, where
    they stay; else this host's mirror, where they hold until trixie's next
    point release replaces them."""
    env = os.environ if environ is None else environ
    if base := env.get(SNAPSHOT_ENV, "").rstrip("/"):
        stamp = snapshot_stamp(path)
        return f"deb [check-valid-until=no] {base}/archive/debian/{stamp}/ {SUITE} main", f"Debian's snapshot archive at {stamp}"
    if not host_mirror:
        raise LabError(
            "no Debian mirror found in this host's apt sources",
            fix=f"pass --mirror URL (a Debian archive), or set {SNAPSHOT_ENV} to the base URL of Debian's snapshot archive",
        )
    return f"deb {host_mirror} {SUITE} main", f"{host_mirror} (the live archive: pins hold until trixie's next point release)"


def image_tag(files: tuple[Path, ...] = (PACKAGES, CONTAINERFILE)) -> str:
    """Tag = hash of what goes into the image, so both build methods give one tag per input."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return f"{IMAGE_NAME}:{h.hexdigest()[:16]}"


@dataclass(frozen=True)
class Engine:
    name: str  # "docker" | "podman"

    @property
    def env(self) -> dict[str, str]:
        return {"CONTAINERS_CONF": str(PODMAN_CONF)} if self.name == "podman" else {}

    def cmd(self, *args: str) -> list[str]:
        return [self.name, *args]

    def works(self, runner: Runner) -> tuple[bool, str]:
        if not shutil.which(self.name):
            return False, f"{self.name} not installed"
        out = runner.run(self.cmd("info"), f"{self.name} info", env_extra=self.env, check=False)
        if out.returncode != 0:
            last = (out.output.strip().splitlines() or ["no output"])[-1]
            return False, f"`{self.name} info` failed: {last}"
        return True, ""

    def has_image(self, runner: Runner, tag: str) -> bool:
        return runner.run(self.cmd("image", "inspect", tag), f"{self.name} image inspect", env_extra=self.env, check=False).ok

    def image_id(self, runner: Runner, tag: str) -> str:
        out = runner.run(self.cmd("image", "inspect", "--format", "{{.Id}}", tag), f"{self.name} image id", env_extra=self.env)
        return out.output.strip()


def detect(runner: Runner, preferred: str | None = None) -> Engine:
    """The first engine that answers `info`; docker first unless told otherwise."""
    names = [preferred] if preferred else ["docker", "podman"]
    problems = []
    for name in names:
        engine = Engine(name)
        ok, why = engine.works(runner)
        if ok:
            return engine
        problems.append(why)
    raise LabError(
        "no working container engine: " + "; ".join(problems),
        fix="install podman (Debian/Ubuntu: apt-get install -y podman runc) or start the Docker engine; "
        "the lab runs podman with runc and without default ulimits (images/podman-containers.conf)",
    )


def build_image(runner: Runner, engine: Engine, method: str = "auto", mirror: str | None = None) -> str:
    """Build the image unless its tag exists; returns the tag."""
    tag = image_tag()
    if engine.has_image(runner, tag):
        ui.info(f"image {tag}: present")
        return tag
    if method == "auto":
        method = "mmdebstrap" if shutil.which("mmdebstrap") else "containerfile"
    pkgs = read_packages()
    if method == "containerfile":
        snapshot = os.environ.get(SNAPSHOT_ENV, "").rstrip("/")
        args = ["--build-arg", f"SNAPSHOT_URL={snapshot}", "--build-arg", f"SNAPSHOT_STAMP={snapshot_stamp()}"] if snapshot else []
        ui.info(f"image packages from {'the snapshot archive at ' + snapshot_stamp() if snapshot else 'the live archive'}")
        with ui.activity(f"building {tag} from {CONTAINERFILE.name}") as progress:
            runner.run(engine.cmd("build", "-f", str(CONTAINERFILE), *args, "-t", tag, str(IMAGE_DIR)), "container build",
                       env_extra=engine.env, on_line=progress)  # fmt: skip
        return tag
    if method != "mmdebstrap":
        raise LabError(f"unknown image method {method!r}", fix="use auto, mmdebstrap or containerfile")
    if not shutil.which("mmdebstrap"):
        raise LabError("mmdebstrap is not installed", fix="apt-get install -y mmdebstrap")
    # A mirror given on the command line is used as given; else the snapshot archive when named, else the host's mirror.
    source_line, source_what = apt_source(mirror, {}) if mirror else apt_source(debian_mirror())
    ui.info(f"image packages from {source_what}")
    out = cache_dir() / "images"
    out.mkdir(parents=True, exist_ok=True)
    tarball = out / f"{tag.split(':')[1]}.tar"
    if not tarball.exists():
        tmp = tarball.with_suffix(".partial")
        keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
        argv = [
            "mmdebstrap", "--variant=apt", "--mode=root", "--format=tar",
            f"--include={','.join(pkgs)}",
            "--aptopt=APT::Install-Recommends \"false\"",
            f"--keyring={keyring}",
            # what the Containerfile copies in, so both images hold the list
            f"--customize-hook=mkdir -p \"$1/usr/share/pvsched-lab\" && cp {PACKAGES} \"$1/usr/share/pvsched-lab/\"",
            "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/archives/*.deb",
            SUITE, str(tmp), source_line,
        ]  # fmt: skip
        with ui.activity(f"mmdebstrap {SUITE} with {len(pkgs)} packages") as progress:
            runner.run(argv, "mmdebstrap", on_line=progress)
        tmp.rename(tarball)
    with ui.activity(f"importing {tarball.name} into {engine.name}"):
        runner.run(
            engine.cmd("import", "--change", f"ENV {IN_IMAGE_ENV}=1", "--change", 'CMD ["/bin/bash"]', str(tarball), tag),
            f"{engine.name} import",
            env_extra=engine.env,
        )
    return tag


def container_runtime(runner: Runner, engine_name: str | None = None) -> ContainerRuntime:
    """The runtime of `--container`: the image (built if missing) in the first
    working engine, the repository, the cache and /tmp at the same paths.
    `runner` runs the engine's own commands on this machine."""
    host = runner.on_host()
    engine = detect(host, engine_name)
    tag = build_image(host, engine)
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    image_id = engine.image_id(host, tag)
    mounts = (REPO, cache, Path("/tmp"))
    files = cache / "runtime-files" / image_id.removeprefix("sha256:")[:16]
    if engine.name == "podman":
        return PodmanRuntime(tag, mounts, files, image_id=image_id, conf=PODMAN_CONF)
    return DockerRuntime(tag, mounts, files, image_id=image_id)
