"""Where the lab finds its inputs and keeps its caches and results."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERNEL_DIR = REPO / "kernel"
LOCK_FILE = KERNEL_DIR / "source.lock"
PATCH_DIR = KERNEL_DIR / "patches"
CONFIG_DIR = KERNEL_DIR / "configs"
RESULTS_DIR = REPO / "results"


def cache_dir() -> Path:
    """Build caches live outside the repo so a fresh clone reuses them."""
    env = os.environ.get("PVSCHED_LAB_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pvsched-lab"
