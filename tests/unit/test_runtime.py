"""Runtimes: the command lines each gives, and a runner that stops commands
which run outside its client's process group (as `podman exec` leaves them)."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path

from lab import cli, profiles
from lab.runner import Runner
from lab.runtime import (
    IN_IMAGE_ENV,
    TOKEN_ENV,
    DockerRuntime,
    Launch,
    NativeRuntime,
    PodmanRuntime,
    processes_with_token,
)

MOUNTS = (Path("/w"), Path("/c"))


def podman(tmp_path: Path) -> PodmanRuntime:
    return PodmanRuntime("localhost/pvsched-lab:abc", MOUNTS, tmp_path / "files", image_id="sha256:1234",
                         owner=4242, name="pvsched-lab-x", conf=Path("/w/images/podman-containers.conf"))  # fmt: skip


def test_native_runs_commands_as_they_are() -> None:
    rt = NativeRuntime(environ={})
    launch = rt.launch(["make", "-j2"], Path("/w"), {"A": "1"})
    assert launch == Launch(["make", "-j2"], Path("/w"), {"A": "1"})
    assert rt.reproducer(["make", "-j2"], Path("/w"), {"A": "1"}) == "cd /w && env A=1 make -j2"
    assert rt.build_suffix == "" and rt.metadata() == {"kind": "native"}
    assert rt.python == sys.executable


def test_native_inside_the_image_keeps_the_containers_build_directory() -> None:
    rt = NativeRuntime(environ={IN_IMAGE_ENV: "1"})
    assert rt.build_suffix == "-container" and rt.metadata()["kind"] == "native"


def test_podman_starts_one_container_with_the_same_paths(tmp_path: Path) -> None:
    argv = podman(tmp_path).start_argv()
    assert argv[:5] == ["podman", "run", "-d", "--rm", "--name"] and "pvsched-lab-x" in argv
    assert "/w:/w" in argv and "/c:/c" in argv
    assert ("--device" in argv) == Path("/dev/kvm").exists()
    # It ends by itself once the lab's process is gone.
    assert argv[argv.index("--pid") + 1] == "host"
    assert argv[-4:-1] == ["localhost/pvsched-lab:abc", "sh", "-c"] and "/proc/4242" in argv[-1]
    assert podman(tmp_path).stop_argv() == ["podman", "rm", "-f", "-t", "0", "pvsched-lab-x"]


def test_podman_execs_each_command_with_its_token_cwd_and_environment(tmp_path: Path) -> None:
    launch = podman(tmp_path).launch(["make", "-j2"], Path("/w/k"), {"B": "2", "A": "1"})
    assert launch.argv[:2] == ["podman", "exec"] and "-i" not in launch.argv and "-t" not in launch.argv
    assert launch.argv[launch.argv.index("-w") + 1] == "/w/k"
    assert launch.argv[-3:] == ["pvsched-lab-x", "make", "-j2"]
    envs = [launch.argv[i + 1] for i, a in enumerate(launch.argv) if a == "-e"]
    assert envs == [f"{TOKEN_ENV}={launch.token}", "A=1", "B=2"]
    assert launch.env_extra == {"CONTAINERS_CONF": "/w/images/podman-containers.conf"}
    # Level 1 boots on the image's root: its Python, not this machine's venv.
    assert podman(tmp_path).python == "python3"
    again = podman(tmp_path).launch(["true"], None, None)
    assert again.token != launch.token
    interactive = podman(tmp_path).launch(["vng"], None, None, stdin=True, tty=True)
    assert "-i" in interactive.argv and "-t" in interactive.argv


def test_a_container_command_is_reproduced_by_a_one_shot_container(tmp_path: Path) -> None:
    line = podman(tmp_path).reproducer(["make", "-j2"], Path("/w/k"), {"A": "1"})
    assert line.startswith("env CONTAINERS_CONF=/w/images/podman-containers.conf podman run --rm -i ")
    assert "-v /w:/w" in line and "-w /w/k" in line and "-e A=1" in line
    assert line.endswith("localhost/pvsched-lab:abc make -j2")


def test_docker_has_the_same_shape_without_podmans_config(tmp_path: Path) -> None:
    rt = DockerRuntime("img:1", MOUNTS, tmp_path, name="n")
    assert rt.launch(["true"], None, None).argv[:2] == ["docker", "exec"]
    assert rt.host_env() == {} and rt.metadata()["engine"] == "docker"


def test_the_runtime_names_the_build_directory_whatever_the_tag(tmp_path: Path) -> None:
    rt = podman(tmp_path)
    assert profiles.build_tag("default", None, rt.build_suffix) == "default-container"
    # A bisect's own tag keeps the suffix: inside and outside never share O=.
    assert profiles.build_tag("default", "bisect-default", rt.build_suffix) == "bisect-default-container"
    assert rt.metadata() == {"kind": "container", "engine": "podman", "image": "localhost/pvsched-lab:abc", "image_id": "sha256:1234"}


class DetachingRuntime(PodmanRuntime):
    """Stands in for `podman exec`: the command runs in a session of its own,
    out of the client's process group, so killing the client leaves it running."""

    def launch(self, argv: list[str], cwd: Path | None, env_extra: Mapping[str, str] | None, *,
               stdin: bool = False, tty: bool = False) -> Launch:  # fmt: skip
        token = f"t{time.monotonic_ns()}"
        env = [f"{k}={v}" for k, v in (env_extra or {}).items()]
        return Launch(["setsid", "-w", "env", f"{TOKEN_ENV}={token}", *env, *argv], cwd, {}, token=token)


def detaching(tmp_path: Path) -> DetachingRuntime:
    return DetachingRuntime("img", (), tmp_path / "files", name="n")


def test_a_timed_out_command_is_killed_inside_the_container_too(tmp_path: Path) -> None:
    runner = Runner(tmp_path / "logs", detaching(tmp_path))
    start = time.monotonic()
    result = runner.run(["sleep", "60"], "sleeper", timeout=1, check=False)
    # Without the token the sleep keeps the output open until the runner
    # gives up (30 s) and reports it stuck.
    assert result.timed_out and not result.stuck
    assert time.monotonic() - start < 15
    deadline = time.monotonic() + 5
    while _token_pids_of_sleep() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _token_pids_of_sleep()


def test_a_background_command_in_the_container_stops(tmp_path: Path) -> None:
    runner = Runner(tmp_path / "logs", detaching(tmp_path))
    bg = runner.start(["sleep", "60"], "sleeper")
    deadline = time.monotonic() + 10
    while not bg.output and time.monotonic() < deadline and not _token_pids_of_sleep():
        time.sleep(0.05)
    assert _token_pids_of_sleep(), "the stand-in never started"
    assert bg.stop(grace=5) is not None
    deadline = time.monotonic() + 5
    while _token_pids_of_sleep() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _token_pids_of_sleep()


def _token_pids_of_sleep() -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes()
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if f"{TOKEN_ENV}=t".encode() in env and cmd.startswith(b"sleep\0"):
            found.append(int(proc.name))
    return found


def test_which_and_readable_ask_the_runtime(tmp_path: Path) -> None:
    runner = Runner(tmp_path / "logs", detaching(tmp_path))
    sh = runner.which("sh")
    assert sh is not None and sh.endswith("/sh")
    assert runner.which("no-such-tool-anywhere") is None
    src = tmp_path / "tool"
    src.write_text("#!/bin/sh\n")
    src.chmod(0o755)
    copy = runner.readable(src)
    assert copy == tmp_path / "files" / str(src).lstrip("/") and copy.read_text() == "#!/bin/sh\n"
    assert copy.stat().st_mode & 0o111
    assert runner.exists(src) and not runner.exists(tmp_path / "absent")


def test_processes_are_found_by_their_token_alone(tmp_path: Path) -> None:
    for pid, env in (("10", b"A=1\0PVSCHED_LAB_COMMAND=abc\0"), ("11", b"PVSCHED_LAB_COMMAND=abcd\0"), ("x", b"")):
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "environ").write_bytes(env)
    assert processes_with_token("abc", tmp_path) == [10]


def test_container_is_an_ordinary_option_of_every_lab_command() -> None:
    args = cli.parser().parse_args(["run", "--container", "--engine", "podman", "--no-retry"])
    assert args.container and args.engine == "podman" and cli._options(args).container
    # After `--`, `--container` is a word of the command run in level 1.
    boot = cli.parser().parse_args(["boot", "--", "echo", "--container"])
    assert not boot.container and boot.cmd == ["--", "echo", "--container"]
    for command in (["kernel"], ["bench"], ["stress"], ["bisect"]):
        assert cli.parser().parse_args([*command, "--container"]).container
