"""A profile means the same for every command, bisect steps included."""

from __future__ import annotations

import pytest

from lab import profiles
from lab.errors import LabError
from lab.pipeline import Options


def test_debug_profile_scales_every_vm_timeout_wherever_options_are_made() -> None:
    default, debug = Options(), Options(profile="debug")
    assert debug.level2_kvm_timeout == 3 * default.level2_kvm_timeout
    assert debug.level2_tcg_timeout == 3 * default.level2_tcg_timeout
    assert debug.level1.run_timeout == 3 * default.level1.run_timeout
    assert debug.level1.tcg_probe_timeout == 3 * default.level1.tcg_probe_timeout
    # A bisect step builds its Options itself, with its own build tag: same timeouts.
    step = Options(profile="debug", install=False, series=False, build_tag="bisect-debug", vm_retries=0)
    assert step.level1.run_timeout == debug.level1.run_timeout
    assert Options().level1.run_timeout == default.level1.run_timeout  # not scaled twice, not shared


def test_build_tags_keep_container_builds_apart_bisects_included() -> None:
    assert profiles.build_tag("default", None, "") == "default"
    assert profiles.build_tag("debug", None, "-container") == "debug-container"
    assert profiles.build_tag("debug", "bisect-debug", "-container") == "bisect-debug-container"


def test_fragments_and_unknown_profiles() -> None:
    assert profiles.get("debug").fragments["host"][-1] == "debug"
    assert "debug" not in profiles.get("default").fragments["guest"]
    with pytest.raises(LabError, match="unknown profile"):
        Options(profile="fast")
