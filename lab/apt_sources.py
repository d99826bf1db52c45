"""The Debian mirrors this machine's apt already uses (never written in the repo)."""

from __future__ import annotations

import re
from pathlib import Path

SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


def apt_uris(sources: tuple[Path, ...] = SOURCES) -> list[str]:
    """Every http(s) URI of the apt sources (one-line and deb822), in order, once each."""
    texts: list[str] = []
    for src in sources:
        files = sorted(src.glob("*.sources")) + sorted(src.glob("*.list")) if src.is_dir() else [src]
        texts += [f.read_text() for f in files if f.exists()]
    uris: list[str] = []
    for text in texts:
        for m in re.finditer(r"^URIs:\s*(.+)$|^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M):
            for uri in (m[1] or m[2]).split():
                if uri.startswith("http") and uri not in uris:
                    uris.append(uri)
    return uris


def debian_mirror(sources: tuple[Path, ...] = SOURCES) -> str | None:
    """The main Debian archive among them (not the security one), for mmdebstrap."""
    return next((u for u in apt_uris(sources) if "debian" in u and not u.rstrip("/").endswith("-security")), None)
