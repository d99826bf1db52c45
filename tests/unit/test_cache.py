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
