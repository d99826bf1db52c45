"""Where the lab's commands run: on this machine, or in the toolchain image.

As in tuxmake, one interface turns a command into the command line that runs
it (`launch`) and into a line that reruns it by hand after the run
(`reproducer`), names the build directory suffix, and reports its metadata
for summary.json. The lab's own Python always runs on this machine; with a
container runtime every command it starts runs in one long-lived container
of the image (`podman exec`/`docker exec`) with the repository, the cache
and /tmp mounted at the same paths, so paths mean the same on both sides.

A killed `exec` client leaves its command running in the container, so
each command carries a token in its environment and `signal_token` finds its
processes by it in /proc (the host sees every container's processes).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# In every command a container runtime starts: the key that finds its processes.
TOKEN_ENV = "PVSCHED_LAB_COMMAND"
# Set in the image: a lab started inside it is native there, but records the image.
IN_IMAGE_ENV = "PVSCHED_LAB_IN_CONTAINER"
KVM = Path("/dev/kvm")


def cwd_line(argv: Sequence[str], cwd: Path | None, env_extra: Mapping[str, str] | None) -> str:
    """A shell line that reruns `argv` on this machine as the lab ran it."""
    parts: list[str] = []
    if cwd is not None:
        parts.append(f"cd {shlex.quote(str(cwd))} &&")
    if env_extra:
        parts.append("env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env_extra.items())))
    parts.append(shlex.join(argv))
    return " ".join(parts)


@dataclass(frozen=True)
class Launch:
    """What the runner starts on this machine for one command."""

    argv: list[str]
    cwd: Path | None
    env_extra: Mapping[str, str]  # over the lab's own environment
    token: str | None = None  # set when the command runs out of the client's process group


class Runtime(ABC):
    kind: str

    @abstractmethod
    def launch(self, argv: list[str], cwd: Path | None, env_extra: Mapping[str, str] | None, *,
               stdin: bool = False, tty: bool = False) -> Launch:  # fmt: skip
        """The command line that runs `argv` in this runtime."""

    @abstractmethod
    def reproducer(self, argv: list[str], cwd: Path | None, env_extra: Mapping[str, str] | None) -> str: ...

    @property
    @abstractmethod
    def build_suffix(self) -> str:
        """Appended to build directory names: another compiler, another directory."""

    @abstractmethod
    def metadata(self) -> dict[str, str]: ...

    @property
    def python(self) -> str:
        """The Python that runs lab/invm in level 1, whose root is this runtime's filesystem."""
        return "python3"

    def start_argv(self) -> list[str] | None:
        """The command that starts the runtime's container, None when there is none."""
        return None

    def stop_argv(self) -> list[str] | None:
        return None

    def host_env(self) -> dict[str, str]:
        """Environment the engine's own commands need on this machine."""
        return {}


class NativeRuntime(Runtime):
    kind = "native"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        # A lab started inside the toolchain image runs natively there.
        self.inside_image = env.get(IN_IMAGE_ENV) == "1"

    def launch(
        self, argv: list[str], cwd: Path | None, env_extra: Mapping[str, str] | None, *, stdin: bool = False, tty: bool = False
    ) -> Launch:
        return Launch(list(argv), cwd, dict(env_extra or {}))

    def reproducer(self, argv: list[str], cwd: Path | None, env_extra: Mapping[str, str] | None) -> str:
        return cwd_line(argv, cwd, env_extra)

    @property
    def build_suffix(self) -> str:
        return "-container" if self.inside_image else ""

    @property
    def python(self) -> str:
        return sys.executable  # the lab's own (nox's venv), as before runtimes

    def metadata(self) -> dict[str, str]:
        return {"kind": "native", **({"inside": "the lab's image"} if self.inside_image else {})}


# Set in the container for every command: the workspace and cache may belong
# to another uid (CI runners), and progress should reach the log as it comes.
CONTAINER_ENV = {
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "safe.directory",
    "GIT_CONFIG_VALUE_0": "*",
    "PYTHONUNBUFFERED": "1",
}


@dataclass
class ContainerRuntime(Runtime):
    """Commands in one container of `image`, started by `start_argv` and
    removed by `stop_argv` (it also ends by itself once the lab's process
    `owner` is gone, so a killed lab leaves no container behind)."""

    image: str
    mounts: tuple[Path, ...]
    files: Path  # where copies of the image's files go for the lab to read (mounted)
    image_id: str = ""
    owner: int = field(default_factory=os.getpid)
    name: str = field(default_factory=lambda: f"pvsched-lab-{os.getpid()}-{secrets.token_hex(3)}")
    engine: str = field(init=False, default="")
    kind: str = field(init=False, default="container")

    def _common(self) -> list[str]:
        opts = ["--security-opt", "label=disable", "--network", "host"]
        if KVM.exists():
            opts += ["--device", str(KVM)]
        for m in self.mounts:
            opts += ["-v", f"{m}:{m}"]
        for k, v in CONTAINER_ENV.items():
            opts += ["-e", f"{k}={v}"]
        return opts

    def start_argv(self) -> list[str]:
        # --pid=host: the lab's pid is visible inside, and the container ends with it.
        keep = f"while [ -d /proc/{self.owner} ]; do sleep 5; done"
        return [self.engine, "run", "-d", "--rm", "--name", self.name, "--pid", "host", "--label", "pvsched-lab",
                *self._common(), self.image, "sh", "-c", keep]  # fmt: skip

    def stop_argv(self) -> list[str]:
        return [self.engine, "rm", "-f", "-t", "0", self.name]

    def launch(
        self, argv: list[str], cwd: Path | None, env_extra: Mapping[str, str] | None, *, stdin: bool = False, tty: bool = False
    ) -> Launch:
        token = secrets.token_hex(8)
        host = [self.engine, "exec"]
        if stdin or tty:
            host.append("-i")
        if tty:
            host.append("-t")
        host += ["-w", str(cwd or Path.cwd()), "-e", f"{TOKEN_ENV}={token}"]
        for k, v in sorted((env_extra or {}).items()):
            host += ["-e", f"{k}={v}"]
        return Launch([*host, self.name, *argv], None, self.host_env(), token=token)

    def reproducer(self, argv: list[str], cwd: Path | None, env_extra: Mapping[str, str] | None) -> str:
        """A one-shot container of the same image: works after the run's container is gone."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.host_env().items()))
        run = [self.engine, "run", "--rm", "-i", *self._common(), "-w", str(cwd or Path.cwd())]
        for k, v in sorted((env_extra or {}).items()):
            run += ["-e", f"{k}={v}"]
        return (f"env {env} " if env else "") + shlex.join([*run, self.image, *argv])

    @property
    def build_suffix(self) -> str:
        return "-container"

    def metadata(self) -> dict[str, str]:
        return {"kind": "container", "engine": self.engine, "image": self.image, "image_id": self.image_id}


@dataclass
class PodmanRuntime(ContainerRuntime):
    conf: Path | None = None  # containers.conf: runc, no default ulimits (images/)

    def __post_init__(self) -> None:
        self.engine = "podman"

    def host_env(self) -> dict[str, str]:
        return {"CONTAINERS_CONF": str(self.conf)} if self.conf else {}


@dataclass
class DockerRuntime(ContainerRuntime):
    def __post_init__(self) -> None:
        self.engine = "docker"


def processes_with_token(token: str, proc: Path = Path("/proc")) -> list[int]:
    """Pids whose environment holds this command's token (its whole tree inside a container)."""
    needle = f"{TOKEN_ENV}={token}".encode()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def signal_token(token: str, sig: int = signal.SIGKILL) -> list[int]:
    """Send `sig` to every process of a command that runs in a container."""
    pids = processes_with_token(token)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return pids
