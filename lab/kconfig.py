"""Config fragments: which ones make each kernel, and checking kconfig kept them.

Fragments are plain kconfig lines in kernel/configs/*.config.  They are merged
by the kernel's own scripts/kconfig/merge_config.sh onto `make tinyconfig`;
this module only reads fragments and verifies the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lab import profiles
from lab.errors import LabError

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


# Which fragments make each kernel, in merge order.  Host and guest carry the
# same options on purpose (the guest can nest KVM, the host boots under
# virtme-ng with virtio and 9p), so by default both are one build.
def parse_config(text: str) -> dict[str, str]:
    """Options of a fragment or .config; "n" stands for `# ... is not set`."""
    options: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if m := _SET.match(line):
            options[m.group(1)] = m.group(2)
        elif m := _UNSET.match(line):
            options[m.group(1)] = "n"
    return options


@dataclass(frozen=True)
class Fragment:
    name: str
    path: Path

    def options(self) -> dict[str, str]:
        return parse_config(self.path.read_text())


def fragments_for(config_dir: Path, profile: str, kernel: str) -> list[Fragment]:
    frags = []
    for name in profiles.get(profile).fragments[kernel]:
        path = config_dir / f"{name}.config"
        if not path.exists():
            raise LabError(f"config fragment {path} is missing", fix=f"restore it: git checkout {path}")
        frags.append(Fragment(name, path))
    return frags


def without(fragments: list[Fragment], options: tuple[str, ...], dest: Path) -> list[Fragment]:
    """`fragments` with `options` removed (written under `dest`): the unpatched
    base kernel has no Kconfig symbol for what the series adds, and kconfig
    would otherwise rightly report them dropped."""
    if not options:
        return fragments
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for frag in fragments:
        lines = frag.path.read_text().splitlines(keepends=True)
        kept = [ln for ln in lines if not any(ln.startswith(f"{o}=") or ln.startswith(f"# {o} is not set") for o in options)]
        if len(kept) == len(lines):
            out.append(frag)
            continue
        path = dest / f"{frag.name}.config"
        path.write_text("".join(kept))
        out.append(Fragment(frag.name, path))
    return out


def requested(fragments: list[Fragment]) -> dict[str, tuple[str, str]]:
    """Option -> (value, fragment that set it); later fragments win, as in merge_config.sh."""
    wanted: dict[str, tuple[str, str]] = {}
    for frag in fragments:
        for key, value in frag.options().items():
            wanted[key] = (value, frag.name)
    return wanted


def dropped_options(wanted: dict[str, tuple[str, str]], final: dict[str, str]) -> list[str]:
    """Every requested option that olddefconfig did not keep, as readable lines."""
    problems = []
    for key, (value, frag) in sorted(wanted.items()):
        got = final.get(key, "n")
        if got != value:
            shown = "not set" if got == "n" else got
            problems.append(f"{key}={value} (from {frag}.config) ended up {shown}")
    return problems


def verify(wanted: dict[str, tuple[str, str]], final_config: Path) -> None:
    problems = dropped_options(wanted, parse_config(final_config.read_text()))
    if problems:
        raise LabError(
            "kconfig dropped requested options after olddefconfig:\n  " + "\n  ".join(problems),
            fix="enable the options they depend on in the same fragment (see `make menuconfig`, search with '/'), or remove them",
        )
