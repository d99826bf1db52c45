from __future__ import annotations

from pathlib import Path

import pytest

from lab import kconfig
from lab.errors import LabError
from lab.paths import CONFIG_DIR


def test_parse_config_reads_set_and_unset() -> None:
    opts = kconfig.parse_config('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S="x y"\n# comment\n')
    assert opts == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_S": '"x y"'}


def _frag(tmp: Path, name: str, text: str) -> kconfig.Fragment:
    path = tmp / f"{name}.config"
    path.write_text(text)
    return kconfig.Fragment(name, path)


def test_later_fragment_wins(tmp_path: Path) -> None:
    wanted = kconfig.requested([_frag(tmp_path, "a", "CONFIG_X=y\n"), _frag(tmp_path, "b", "CONFIG_X=m\n")])
    assert wanted == {"CONFIG_X": ("m", "b")}


def test_dropped_and_changed_options_are_named() -> None:
    wanted = {"CONFIG_KVM": ("y", "host"), "CONFIG_NR_CPUS": ("16", "common"), "CONFIG_OFF": ("n", "common")}
    final = {"CONFIG_NR_CPUS": "8"}
    problems = kconfig.dropped_options(wanted, final)
    assert problems == [
        "CONFIG_KVM=y (from host.config) ended up not set",
        "CONFIG_NR_CPUS=16 (from common.config) ended up 8",
    ]
    assert kconfig.dropped_options(wanted, {"CONFIG_KVM": "y", "CONFIG_NR_CPUS": "16"}) == []


def test_verify_raises_naming_option(tmp_path: Path) -> None:
    final = tmp_path / ".config"
    final.write_text("# CONFIG_KVM is not set\n")
    with pytest.raises(LabError, match="CONFIG_KVM=y"):
        kconfig.verify({"CONFIG_KVM": ("y", "host")}, final)


def test_unknown_profile_is_an_error() -> None:
    with pytest.raises(LabError, match="unknown profile"):
        kconfig.fragments_for(CONFIG_DIR, "nope", "host")


def test_repo_fragments_cover_what_the_system_needs() -> None:
    host = kconfig.requested(kconfig.fragments_for(CONFIG_DIR, "default", "host"))
    guest = kconfig.requested(kconfig.fragments_for(CONFIG_DIR, "default", "guest"))
    for opt in ("CONFIG_KVM_INTEL", "CONFIG_KVM_AMD", "CONFIG_BPF_SYSCALL", "CONFIG_BPF_JIT", "CONFIG_DEBUG_INFO_BTF",
                "CONFIG_SCHED_CLASS_EXT", "CONFIG_FTRACE"):  # fmt: skip
        assert host[opt][0] == "y", opt
    for opt in ("CONFIG_VIRTIO_PCI", "CONFIG_9P_FS", "CONFIG_VIRTIO_FS", "CONFIG_MODULES", "CONFIG_DEBUG_INFO_BTF"):
        assert guest[opt][0] == "y", opt
    # Equal option sets are what lets host and guest share one build.
    assert {k: v for k, (v, _) in host.items()} == {k: v for k, (v, _) in guest.items()}
    debug = kconfig.requested(kconfig.fragments_for(CONFIG_DIR, "debug", "host"))
    assert debug["CONFIG_PROVE_LOCKING"][0] == "y" and debug["CONFIG_KASAN"][0] == "y"


def test_without_drops_only_the_named_options_into_new_fragments(tmp_path: Path) -> None:
    host = _frag(tmp_path, "host", "CONFIG_KVM=y\nCONFIG_KVM_PVSCHED=y\n")
    common = _frag(tmp_path, "common", "CONFIG_SMP=y\n")
    out = kconfig.without([common, host], ("CONFIG_KVM_PVSCHED",), tmp_path / "derived")
    assert out[0] == common  # untouched fragments are used as they are
    assert out[1].name == "host" and out[1].path != host.path
    assert kconfig.requested(out) == {"CONFIG_SMP": ("y", "common"), "CONFIG_KVM": ("y", "host")}
    assert kconfig.without([host], (), tmp_path / "none") == [host]


def test_every_option_the_series_adds_is_dropped_for_the_unpatched_base() -> None:
    """A fragment option whose Kconfig symbol a patch of the series creates
    would be reported dropped by the unpatched base kernel's config step."""
    import re

    from lab.emulator_control import SERIES_OPTIONS
    from lab.paths import REPO

    added = set()
    for patch in (REPO / "kernel/patches").glob("*.patch"):
        added |= {f"CONFIG_{m}" for m in re.findall(r"^\+(?:menu)?config (\w+)$", patch.read_text(), re.M)}
    used = set()
    for frag in (REPO / "kernel/configs").glob("*.config"):
        used |= set(re.findall(r"^(CONFIG_\w+)=", frag.read_text(), re.M))
    assert added & used, "no fragment option comes from the series: the test reads the wrong files"
    assert sorted((added & used) - set(SERIES_OPTIONS)) == []
