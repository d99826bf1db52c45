"""What machine a run ran on, for summary.json's `host`: results from many
machines (a CI matrix, a laptop) can then be told apart when merged."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from lab.doctor import Check


def _cpu_model(cpuinfo: str) -> tuple[str, str]:
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields.get("vendor_id", "unknown"), fields.get("model name", "unknown")


def _nested(sys_module: Path) -> str:
    """kvm_amd's or kvm_intel's `nested` parameter, or why there is none."""
    for module in ("kvm_amd", "kvm_intel"):
        param = sys_module / module / "parameters" / "nested"
        if param.exists():
            return f"{module}.nested={param.read_text().strip()}"
    return "no kvm_amd/kvm_intel module loaded"


def collect(checks: list[Check], proc: Path = Path("/proc"), sys_module: Path = Path("/sys/module")) -> dict[str, str]:
    try:
        vendor, model = _cpu_model((proc / "cpuinfo").read_text())
    except OSError:
        vendor, model = "unknown", "unknown"
    versions = {c.tool.name: ".".join(map(str, c.version)) for c in checks if c.version}
    return {
        "cpu_vendor": vendor,
        "cpu_model": model,
        "cpus": str(os.cpu_count() or 0),
        "kernel": platform.release(),
        "kvm": "/dev/kvm present" if Path("/dev/kvm").exists() else "no /dev/kvm",
        "nested": _nested(sys_module),
        "qemu": versions.get("qemu", "unknown"),
        "virtme_ng": versions.get("vng", "unknown"),
        # GitHub's runner, when there is one; the machine's name otherwise.
        "runner": os.environ.get("RUNNER_NAME") or platform.node(),
    }
