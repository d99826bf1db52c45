"""Content-addressed store of finished builds.

An entry is a directory named by the hash of everything that went into it.
It is written under a temporary name and renamed into place, so a reader
sees either a whole entry or none; a per-key lock stops two runs building
the same entry at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


def cache_key(parts: Mapping[str, str]) -> str:
    """Stable hash of named inputs; the names are part of it, their order is not."""
    h = hashlib.sha256()
    for name in sorted(parts):
        h.update(name.encode())
        h.update(b"\0")
        h.update(parts[name].encode())
        h.update(b"\0")
    return h.hexdigest()


@contextmanager
def file_lock(path: Path, shared: bool = False, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """An flock, exclusive unless `shared`, released on exit or when the process dies.

    `on_wait` is called once if the lock is held elsewhere, before blocking on it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with path.open("a") as f:
        try:
            fcntl.flock(f, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(f, mode)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root

    def entry(self, key: str) -> Path:
        return self.root / key

    def lookup(self, key: str) -> Path | None:
        entry = self.entry(key)
        return entry if (entry / "meta.json").exists() else None

    @contextmanager
    def locked(self, key: str) -> Iterator[None]:
        with file_lock(self.root / ".locks" / f"{key}.lock"):
            yield

    @contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        """Yield a scratch directory; on success it becomes the entry atomically.

        The caller must hold `locked(key)`.  A failure or interrupt leaves only
        a `.tmp-*` directory, which the next writer of the key removes.
        """
        tmp = self.root / f".tmp-{key}-{os.getpid()}"
        for stale in self.root.glob(f".tmp-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            yield tmp
            if not (tmp / "meta.json").exists():
                raise RuntimeError("cache entry written without meta.json")
            final = self.entry(key)
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def write_meta(entry: Path, meta: Mapping[str, object]) -> None:
        (entry / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @staticmethod
    def read_meta(entry: Path) -> dict[str, object]:
        data: dict[str, object] = json.loads((entry / "meta.json").read_text())
        return data


def publish(target: Path, build: Callable[[Path], None], done: Callable[[Path], bool] | None = None) -> bool:
    """Build `target` (a file or directory) once, whatever other runs do at the same time.

    `build(tmp)` writes a temporary path of this process; it is renamed to
    `target` under a lock of its own, after checking again that no other
    run published it meanwhile. A published target is never removed or
    rewritten, so a run reading it is never left without it. Returns
    whether this call built it (False: it was there, or another run made it).
    """
    is_done = done or (lambda path: path.exists())
    if is_done(target):
        return False
    with file_lock(target.with_name(f".{target.name}.lock")):
        if is_done(target):
            return False
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        _remove(tmp)
        try:
            build(tmp)
            _remove(target)  # an unfinished leftover (no `done` mark), never a published one
            os.rename(tmp, target)
        finally:
            _remove(tmp)
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
