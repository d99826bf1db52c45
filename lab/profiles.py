"""What a profile means, for every command (run, bench, stress, bisect):
the config fragments of each kernel, how much slower its VMs boot and run,
and the name of its incremental build directory."""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import LabError


@dataclass(frozen=True)
class Profile:
    name: str
    fragments: dict[str, tuple[str, ...]]  # kernel ("host", "guest") -> kernel/configs/<name>.config, in order
    # KASAN and lockdep make every boot several times slower: VM timeouts scale by this.
    timeout_factor: float = 1.0


PROFILES: dict[str, Profile] = {
    "default": Profile("default", {"host": ("common", "host", "guest"), "guest": ("common", "guest", "host")}),
    "debug": Profile(
        "debug",
        {"host": ("common", "host", "guest", "debug"), "guest": ("common", "guest", "host", "debug")},
        timeout_factor=3.0,
    ),
}


def get(name: str) -> Profile:
    if name not in PROFILES:
        raise LabError(f"unknown profile '{name}'", fix=f"use one of {', '.join(PROFILES)}")
    return PROFILES[name]


def build_tag(profile: str, override: str | None, runtime_suffix: str) -> str:
    """The incremental build directory's name: the profile (or a bisect's own
    tag), and the runtime's suffix (lab.runtime): the container's compiler
    would otherwise rebuild everything at each switch."""
    return (override or profile) + runtime_suffix
