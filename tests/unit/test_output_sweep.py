"""The output store's start-up sweep, alone and shared by several processes (real files)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bridge.outputs import OutputStore


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_sweep_removes_partials_and_unreferenced_objects(tmp_path: Path) -> None:
    store = OutputStore(tmp_path, spool_bytes=0)  # every download in a file from its start
    kept = store.put([b"kept"])
    dropped = store.put([b"dropped"])
    part = store.partial()
    part.write(b"half")
    assert store.sweep({kept.sha256}) == (1, 1)
    assert store.has(kept.sha256) and not store.has(dropped.sha256)
    assert part.path is not None and not part.path.exists()
    part.discard()


def test_a_shared_store_keeps_what_another_process_is_writing(tmp_path: Path) -> None:
    # Another process's download in progress and its object not yet referenced (between the
    # rename and its commit) are younger than min_age: kept. Old leftovers of a crash go.
    store = OutputStore(tmp_path, spool_bytes=0)
    fresh = store.put([b"just stored by another process"])
    old = store.put([b"left by a crash an hour ago"])
    _age(store.path_of(old.sha256), 7200)
    writing = store.partial()
    writing.write(b"downloading")
    leftover = store.partial()
    leftover.write(b"left")
    assert writing.path is not None and leftover.path is not None
    _age(leftover.path, 7200)
    assert store.sweep(set(), min_age=3600) == (1, 1)
    assert store.has(fresh.sha256) and not store.has(old.sha256)
    assert writing.path.exists() and not leftover.path.exists()
    writing.discard()
