"""Choosing each VM level's accelerator from probe boots, not from /dev/kvm existing.

Stdlib only: level 1 imports it to choose level 2's accelerator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PREFERENCE = ("kvm", "tcg")


@dataclass(frozen=True)
class Probe:
    accel: str
    ok: bool
    seconds: float
    reason: str = ""  # why it failed, or "" when ok

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def kvm_worth_trying(dev_kvm_exists: bool, dev_kvm_rw: bool) -> tuple[bool, str]:
    """Whether a KVM probe can succeed at all; the probe boot still decides."""
    if not dev_kvm_exists:
        return False, "no /dev/kvm"
    if not dev_kvm_rw:
        return False, "/dev/kvm not readable and writable by this user"
    return True, ""


def choose(probes: list[Probe]) -> str | None:
    """The preferred accelerator whose probe booted, or None when none did."""
    booted = {p.accel for p in probes if p.ok}
    for accel in PREFERENCE:
        if accel in booted:
            return accel
    return None


def probe_timeout(accel: str, kvm_seconds: float, tcg_seconds: float) -> float:
    """A KVM probe that hangs must give up fast; TCG is slow but honest."""
    return kvm_seconds if accel == "kvm" else tcg_seconds
