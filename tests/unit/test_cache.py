from __future__ import annotations

from pathlib import Path

import pytest

from lab.cache import Store, cache_key


def test_key_ignores_order_but_not_content() -> None:
    a = cache_key({"source": "s", "config": "c"})
    assert a == cache_key({"config": "c", "source": "s"})
    assert a != cache_key({"source": "s", "config": "c2"})
    assert a != cache_key({"source2": "s", "config": "c"})
    # Names and values cannot be shifted into each other.
    assert cache_key({"ab": "c"}) != cache_key({"a": "bc"})


def test_entry_appears_only_when_complete(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.lookup("k") is None
    with store.locked("k"), store.writing("k") as tmp:
        (tmp / "bzImage").write_bytes(b"x")
        assert store.lookup("k") is None  # not visible while being written
        Store.write_meta(tmp, {"key": "k"})
    entry = store.lookup("k")
    assert entry is not None and (entry / "bzImage").read_bytes() == b"x"
    assert Store.read_meta(entry) == {"key": "k"}


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(KeyboardInterrupt), store.locked("k"), store.writing("k") as tmp:
        Store.write_meta(tmp, {"key": "k"})
        raise KeyboardInterrupt
    assert store.lookup("k") is None
    assert not list(tmp_path.glob(".tmp-*"))


def test_entry_without_meta_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(RuntimeError), store.writing("k") as tmp:
        (tmp / "bzImage").write_bytes(b"x")
    assert store.lookup("k") is None


def _publish_slowly(target: str, log: str, start: float) -> None:
    """Run in another process: publish `target`, taking a while, and log whether this process built it."""
    import os
    import time as t

    from lab.cache import publish

    t.sleep(max(0.0, start - t.time()))

    def build(tmp: Path) -> None:
        tmp.mkdir()
        for i in range(20):
            (tmp / f"part{i}").write_text(str(os.getpid()))
            t.sleep(0.01)
        (tmp / ".done").write_text("")

    built = publish(Path(target), build, lambda p: (p / ".done").exists())
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {'built' if built else 'found'} {len(list(Path(target).iterdir()))}\n")


def test_two_processes_publish_an_artifact_once_and_never_remove_it(tmp_path: Path) -> None:
    import multiprocessing
    import time

    target, log = tmp_path / "bpf" / "abc", tmp_path / "log"
    target.parent.mkdir()
    start = time.time() + 0.3  # both start building at once
    procs = [multiprocessing.get_context("spawn").Process(target=_publish_slowly, args=(str(target), str(log), start)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    outcomes = log.read_text().splitlines()
    assert sorted(line.split()[1] for line in outcomes) == ["built", "found"], outcomes
    # The one that found it saw it whole, and it is still whole: written by one process only.
    assert all(line.split()[2] == "21" for line in outcomes)
    assert len({(target / f"part{i}").read_text() for i in range(20)}) == 1
    assert not [p for p in target.parent.iterdir() if ".tmp-" in p.name]


def test_a_leftover_without_its_done_mark_is_replaced(tmp_path: Path) -> None:
    from lab.cache import publish

    target = tmp_path / "initramfs.cpio.gz"
    target.write_text("half")  # left by an older lab, which published without the mark done() looks for
    assert publish(target, lambda tmp: tmp.write_text("whole"), lambda p: p.read_text() == "whole")
    assert target.read_text() == "whole"
    assert not publish(target, lambda tmp: tmp.write_text("again"), lambda p: p.read_text() == "whole")
