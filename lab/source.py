"""Kernel source: fetch what the lock file pins, make it a git tree, apply patches.

The tree keeps one base commit (the pinned source) and one tag per patch
series applied on it.  Switching series is a `git checkout`, which only
touches files that differ, so the out-of-tree build stays incremental.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab import ui
from lab.apt_sources import apt_uris
from lab.cache import file_lock
from lab.errors import LabError
from lab.lockfile import Lock, SourceLock, sha256_file, verify_sha256
from lab.paths import LOCK_FILE, REPO
from lab.runner import Result, Runner
from lab.source_locations import SNAPSHOT_ENV, fetch_verified

LOCK_NAME = str(LOCK_FILE.relative_to(REPO))


@dataclass(frozen=True)
class SourceTree:
    path: Path
    base: str  # commit of the pinned source
    head: str  # commit with the series applied
    patches: tuple[str, ...]
    identity: str  # what the cache key uses for "source + patches"


def read_series(patch_dir: Path) -> list[Path]:
    """Patches named in `series`, in order; comments and blank lines ignored."""
    series = patch_dir / "series"
    if not series.exists():
        return []
    patches = []
    for raw in series.read_text().splitlines():
        name = raw.split("#", 1)[0].strip()
        if not name:
            continue
        path = patch_dir / name
        if not path.exists():
            raise LabError(
                f"{series} names {name}, which does not exist",
                fix=f"add {path} or remove the line from {series}",
            )
        patches.append(path)
    return patches


def deb_name(src: SourceLock) -> str:
    """The file `apt-get download` writes for the pinned package."""
    return f"{src.package}_{src.package_version.replace(':', '%3a')}_all.deb"


def apt_download(runner: Runner, src: SourceLock, into: Path) -> Result:
    """`apt-get download` of the pinned package into `into`: with this
    machine's apt when it has one, whatever the runtime (its lists name the
    pinned build; the image's, a newer suite without lists, do not)."""
    fetcher = runner.on_host() if shutil.which("apt-get") else runner
    return fetcher.run(["apt-get", "download", f"{src.package}={src.package_version}"], f"apt-get download {src.package}",
                       cwd=into, check=False)  # fmt: skip


def series_hash(base: str, patches: list[Path]) -> str:
    h = hashlib.sha256(base.encode())
    for p in patches:
        h.update(b"\0" + p.name.encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


def _git_env(lock: Lock) -> dict[str, str]:
    # Fixed identity and dates: the same source and series give the same commits.
    return {
        "GIT_AUTHOR_NAME": lock.build.user,
        "GIT_AUTHOR_EMAIL": f"{lock.build.user}@{lock.build.host}",
        "GIT_COMMITTER_NAME": lock.build.user,
        "GIT_COMMITTER_EMAIL": f"{lock.build.user}@{lock.build.host}",
        "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z",
    }


class SourceManager:
    def __init__(self, cache: Path, runner: Runner, lock: Lock, tree_name: str | None = None) -> None:
        self.cache = cache
        self.tree_name = tree_name  # a fixed tree for every origin (bisect: one incremental build dir)
        self.runner = runner
        self.lock = lock
        self.downloads = cache / "downloads"
        self.downloads.mkdir(parents=True, exist_ok=True)

    # -- fetching -----------------------------------------------------------

    def fetch_tarball(self) -> Path:
        src = self.lock.source
        target = self.downloads / f"linux-{src.version}-{src.sha256[:16]}.tar{_suffix(src)}"
        if target.exists():
            verify_sha256(target, src.sha256, "kernel tarball")
            return target
        # Fetched under a temporary name: only a file that is what the lock
        # pins gets the pinned name, so a mismatch leaves nothing behind.
        tmp = target.with_name(target.name + ".partial")
        try:
            origin = self._fetch_debian(src, tmp) if src.kind == "debian" else self._fetch_url(src, tmp)
            actual = sha256_file(tmp)
            if actual != src.sha256:
                raise LabError(
                    f"checksum mismatch for the kernel tarball from {origin}: expected {src.sha256}, got {actual} "
                    "(the fetched file was discarded)",
                    fix=f'if that source is intended, pin it: sha256 = "{actual}" in {LOCK_NAME} '
                    "(or --source-sha256 for --source-tarball); otherwise check where the file comes from",
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def _fetch_debian(self, src: SourceLock, dest: Path) -> str:
        deb = self.downloads / deb_name(src)
        origin = f"{src.member} in {deb}"
        if deb.exists():
            verify_sha256(deb, src.package_sha256, "Debian package")  # a fresh download is verified below
        else:
            result = apt_download(self.runner, src, self.downloads)
            tried = [f"apt-get download: {result.output.strip().splitlines()[-1] if result.output.strip() else 'failed'}"]
            if not result.ok or not deb.exists() or sha256_file(deb) != src.package_sha256:
                deb.unlink(missing_ok=True)
                attempts = fetch_verified(src.locations, apt_uris(), src.package_sha256, deb)
                tried += [f"{a.where}: {a.why}" for a in attempts]
                if deb.exists():
                    origin = f"{src.member} in {deb} (from {attempts[-1].where})"
                    ui.info(f"kernel source: apt could not give it; {attempts[-1].where} did")
            if not deb.exists():
                installed = Path("/") / src.member
                if installed.exists() and sha256_file(installed) == src.sha256:
                    shutil.copyfile(installed, dest)  # the installed package is the pinned one
                    return str(installed)
                raise LabError(
                    f"could not download {src.package}={src.package_version} from any location:\n  " + "\n  ".join(tried),
                    fix=f"run `apt-get update`; set {SNAPSHOT_ENV} to Debian's snapshot archive; or pin the version "
                    f"`apt-cache policy {src.package}` offers in {LOCK_NAME} (package_version, package_sha256, sha256)",
                    log=str(result.log),
                )
        self.runner.run(
            ["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -xO "$2" > "$3"', "sh", str(deb), src.member, str(dest)],
            "extract kernel tarball",
        )
        return origin

    def _fetch_url(self, src: SourceLock, dest: Path) -> str:
        if src.url.startswith(("http://", "https://")):
            try:
                with urllib.request.urlopen(src.url, timeout=60) as resp, dest.open("wb") as out:
                    shutil.copyfileobj(resp, out)
            except OSError as exc:
                raise LabError(f"downloading {src.url} failed: {exc}", fix="check the URL and network") from exc
            return src.url
        path = Path(src.url).expanduser()
        if not path.exists():
            raise LabError(f"kernel tarball {path} not found", fix="give an existing path or URL")
        shutil.copyfile(path, dest)
        return str(path)

    # -- the git tree ---------------------------------------------------------

    def tree_dir(self) -> Path:
        src = self.lock.source
        if self.tree_name:
            return self.cache / "src" / self.tree_name
        if src.kind == "git":
            return self.cache / "src" / ("git-" + hashlib.sha256(str(Path(src.git).resolve()).encode()).hexdigest()[:16])
        return self.cache / "src" / f"linux-{src.version}-{src.sha256[:16]}"

    def _git(self, tree: Path, args: list[str], label: str, check: bool = True) -> str:
        return self.runner.run(["git", "-C", str(tree), *args], label, env_extra=_git_env(self.lock), check=check).output.strip()

    def base_tree(self) -> tuple[Path, str]:
        """The git tree at the pinned source, created on first use."""
        tree = self.tree_dir()
        src = self.lock.source
        if src.kind == "git":
            return tree, self._base_from_git(tree, src)
        if not (tree / ".git").exists():
            tarball = self.fetch_tarball()
            tmp = tree.with_name(tree.name + f".tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            self.runner.run(["tar", "-xf", tarball, "-C", tmp, "--strip-components=1"], "unpack kernel source")
            self._git(tmp, ["init", "-q"], "git init")
            # An automatic repack of 90k files would compete with the build.
            self._git(tmp, ["config", "gc.auto", "0"], "git config gc.auto")
            self._git(tmp, ["add", "-A", "-f"], "git add source")
            self._git(
                tmp,
                ["commit", "-q", "--no-verify", "-m", f"base: Linux {src.version} ({src.identity()})"],
                "git commit base",
            )
            self._git(tmp, ["tag", "lab/base"], "git tag base")
            os.rename(tmp, tree)
        return tree, self._git(tree, ["rev-parse", "lab/base^{commit}"], "resolve base")

    def _base_from_git(self, tree: Path, src: SourceLock) -> str:
        origin = Path(src.git).expanduser().resolve()
        if not (origin / ".git").exists() and not (origin / "HEAD").exists():
            raise LabError(f"{origin} is not a git tree", fix="pass the path of a kernel git checkout")
        if not (tree / ".git").exists():
            tree.parent.mkdir(parents=True, exist_ok=True)
            self.runner.run(["git", "clone", "-q", "--shared", "--no-checkout", origin, tree], "git clone kernel tree")
            self._git(tree, ["config", "gc.auto", "0"], "git config gc.auto")
        self._git(tree, ["fetch", "-q", "--no-tags", str(origin), src.ref], f"git fetch {src.ref}")
        base = self._git(tree, ["rev-parse", "FETCH_HEAD^{commit}"], "resolve ref")
        self._git(tree, ["tag", "-f", "lab/base", base], "git tag base")
        return base

    def prepare(self, patch_dir: Path | None) -> SourceTree:
        """The tree checked out at base + series, applying the series once per content.

        `patch_dir` None: the base as it is (bisect builds each commit unchanged).
        """
        tree, base = self.base_tree()
        patches = read_series(patch_dir) if patch_dir else []
        digest = series_hash(base, patches)
        tag = f"lab/series-{digest[:16]}"
        with self._tree_lock(tree):
            exists = self._git(tree, ["rev-parse", "-q", "--verify", f"{tag}^{{commit}}"], "look up series", check=False)
            if exists:
                self._git(tree, ["checkout", "-q", "-f", "--detach", tag], "checkout series")
            else:
                self._git(tree, ["checkout", "-q", "-f", "--detach", "lab/base"], "checkout base")
                for patch in patches:
                    self._apply(tree, patch, base)
                self._git(tree, ["tag", "-f", tag], "tag series")
            head = self._git(tree, ["rev-parse", "HEAD"], "resolve head")
        return SourceTree(
            path=tree,
            base=base,
            head=head,
            patches=tuple(p.name for p in patches),
            identity=f"{self.lock.source.identity()}+series:{digest}",
        )

    def _tree_lock(self, tree: Path, shared: bool = False) -> AbstractContextManager[None]:
        lock = tree.with_name(tree.name + ".lock")
        return file_lock(lock, shared, lambda: ui.info(f"waiting for another lab run to finish with {tree} ({lock})"))

    @contextmanager
    def held(self, tree: SourceTree) -> Iterator[None]:
        """`tree` stays checked out at its head while the caller builds from it.

        Runs share one working tree per source: a run checking out another
        series or commit needs the tree's lock exclusively, so it waits for
        this build instead of changing files under it.
        """
        for _ in range(3):
            with self._tree_lock(tree.path, shared=True):
                if self._git(tree.path, ["rev-parse", "HEAD"], "check tree head") == tree.head:
                    yield
                    return
            # Another run checked out something else since `prepare`.
            with self._tree_lock(tree.path):
                self._git(tree.path, ["checkout", "-q", "-f", "--detach", tree.head], "checkout head again")
        raise LabError(
            f"the source tree {tree.path} keeps being checked out by other lab runs",
            fix="run one lab command at a time on this cache, or give each its own PVSCHED_LAB_CACHE",
        )

    def checkout_commit(self, origin: Path, ref: str) -> SourceTree:
        """`ref` of `origin` (a clone of this tree) checked out as it is, without the series.

        Bisecting the lab's own series uses this: commits near the series head
        then rebuild incrementally in the profile's usual build directory.
        """
        tree, base = self.base_tree()
        with self._tree_lock(tree):
            self._git(tree, ["fetch", "-q", "--no-tags", str(origin), ref], f"git fetch {ref}")
            head = self._git(tree, ["rev-parse", "FETCH_HEAD^{commit}"], "resolve commit")
            self._git(tree, ["checkout", "-q", "-f", "--detach", head], "checkout commit")
        return SourceTree(path=tree, base=base, head=head, patches=(), identity=f"{self.lock.source.identity()}+commit:{head}")

    def _apply(self, tree: Path, patch: Path, base: str) -> None:
        result = self.runner.run(
            ["git", "-C", str(tree), "am", "-q", "--committer-date-is-author-date", str(patch)],
            f"git am {patch.name}",
            env_extra=_git_env(self.lock),
            check=False,
        )
        if not result.ok:
            self._git(tree, ["am", "--abort"], "git am --abort", check=False)
            raise LabError(
                f"patch {patch} does not apply on {base[:12]}",
                fix=f"rebase it: in a kernel tree at {base[:12]} apply the series up to it, "
                f"resolve, and regenerate it with `git format-patch`; or drop it from {patch.parent}/series",
                log=str(result.log),
            )


def _suffix(src: SourceLock) -> str:
    name = src.member or src.url
    for ext in (".xz", ".gz", ".bz2", ".zst"):
        if name.endswith(ext):
            return ext
    return ""
