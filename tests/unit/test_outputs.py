"""The output file store: content-addressed, written while hashed, swept of leftovers."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from bridge.outputs import SPOOL_BYTES, OutputStore


def _stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_a_file_is_stored_under_its_sha256_and_read_back_in_chunks(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    content = b"x" * 3_000_000
    stored = store.put([content[:1000], content[1000:]])
    assert stored.sha256 == hashlib.sha256(content).hexdigest() and stored.size == len(content)
    assert store.path_of(stored.sha256).read_bytes() == content
    assert b"".join(store.read_chunks(stored.sha256, 1 << 20)) == content
    assert not list((tmp_path / "tmp").iterdir())


def test_a_restarted_download_keeps_only_its_last_attempt(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    with store.partial() as part:
        part.write(b"half of a first attempt")
        part.restart()
        part.write(b"whole")
        stored = part.commit()
    assert stored.sha256 == hashlib.sha256(b"whole").hexdigest() and stored.size == 5


def test_the_same_content_stored_twice_is_one_object_and_leaves_no_partial(
    tmp_path: Path,
) -> None:
    store = OutputStore(tmp_path)
    first = store.put([b"alike in every job"])
    before = store.path_of(first.sha256).stat()
    second = store.put([b"alike ", b"in every job"])
    assert second == first
    after = store.path_of(first.sha256).stat()
    assert after.st_ino == before.st_ino  # the object was not written again
    assert not list((tmp_path / "tmp").iterdir())
    assert _stored_files(tmp_path / "objects") == [store.path_of(first.sha256)]


def test_a_content_stored_again_is_new_to_a_sweep_of_old_objects(tmp_path: Path) -> None:
    # Another process's start sweeps unreferenced objects older than min_age. An old one
    # that a download has just matched (and whose row is about to be written) is kept.
    store = OutputStore(tmp_path)
    old = store.put([b"alike in every job"])
    path = store.path_of(old.sha256)
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    assert store.put([b"alike in every job"]) == old
    assert store.sweep(set(), min_age=600) == (0, 0) and path.is_file()
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    assert store.sweep(set(), min_age=600) == (0, 1) and not path.exists()


def test_a_stored_object_whose_time_cannot_be_renewed_is_still_stored_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another user's object in a shared store (this runs as root here, which may renew any
    # file's time: the refusal is simulated).
    store = OutputStore(tmp_path)
    first = store.put([b"alike in every job"])
    inode = store.path_of(first.sha256).stat().st_ino

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError("not the owner")

    monkeypatch.setattr(os, "utime", refuse)
    assert store.put([b"alike in every job"]) == first
    assert store.path_of(first.sha256).stat().st_ino == inode
    assert not list((tmp_path / "tmp").iterdir())


def test_an_uncommitted_download_leaves_nothing(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    with pytest.raises(RuntimeError), store.partial() as part:
        part.write(b"partial")
        raise RuntimeError("the download failed")
    assert not list((tmp_path / "tmp").iterdir())


def test_the_sweep_removes_partial_and_unreferenced_files_only(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    kept = store.put([b"kept"])
    dropped = store.put([b"dropped"])
    (tmp_path / "tmp" / "left-by-a-crash.part").write_bytes(b"partial")
    assert store.sweep({kept.sha256}) == (1, 1)
    assert store.has(kept.sha256) and not store.has(dropped.sha256)


@pytest.mark.parametrize("digest", ["", "../../etc/passwd", "A" * 64, "0" * 63])
def test_only_a_sha256_names_a_file(tmp_path: Path, digest: str) -> None:
    with pytest.raises(ValueError):
        OutputStore(tmp_path).path_of(digest)


def test_a_small_download_is_held_in_memory_until_its_commit(tmp_path: Path) -> None:
    """Under the spool size no temporary file is made before the commit, and none at all
    when the content is stored already; past it the file is made and the rest streams in."""
    store = OutputStore(tmp_path, spool_bytes=16)
    stored = store.put([b"0123456789"])
    with store.partial() as again:
        again.write(b"01234")
        again.write(b"56789")
        assert again.path is None and not list((tmp_path / "tmp").iterdir())
        assert again.commit() == stored
    assert again.path is None  # never written to disk: the object was there
    with store.partial() as big:
        big.write(b"x" * 10)
        assert big.path is None
        big.write(b"y" * 10)  # 20 bytes: over the spool
        assert big.path is not None and big.path.exists()
        big.restart()
        big.write(b"z" * 3)
        kept = big.commit()
    assert kept.sha256 == hashlib.sha256(b"zzz").hexdigest() and kept.size == 3
    assert b"".join(store.read_chunks(kept.sha256)) == b"zzz"
    assert not list((tmp_path / "tmp").iterdir())


def test_a_small_file_comes_back_inline_and_is_never_written(tmp_path: Path) -> None:
    store = OutputStore(tmp_path, inline_bytes=4096)
    for content in (b"", b"4", b"x" * 4096):
        with store.partial() as part:
            part.write(content)
            stored = part.commit(inline_budget=4096)
        assert stored.content == content and stored.size == len(content)
        assert stored.sha256 == hashlib.sha256(content).hexdigest()
    assert _stored_files(tmp_path) == []


@pytest.mark.parametrize(
    ("spool", "inline_bytes", "budget", "size"),
    [
        (SPOOL_BYTES, 4096, 1 << 20, 4097),  # over the store's limit
        (SPOOL_BYTES, 4096, 100, 101),  # over what the caller has left
        (SPOOL_BYTES, 0, 1 << 20, 1),  # inline files off (the default)
        (16, 4096, 1 << 20, 20),  # over the spool: already in a file (the limit is cut to 16)
    ],
)
def test_a_file_over_a_limit_is_stored_as_an_object(
    tmp_path: Path, spool: int, inline_bytes: int, budget: int, size: int
) -> None:
    store = OutputStore(tmp_path, spool_bytes=spool, inline_bytes=inline_bytes)
    with store.partial() as part:
        part.write(b"y" * size)
        stored = part.commit(inline_budget=budget)
    assert stored.content is None and stored.size == size
    assert store.path_of(stored.sha256).read_bytes() == b"y" * size
    assert store.inline_bytes <= store.spool_bytes
