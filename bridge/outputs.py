"""The output file store: result files on disk, content-addressed, written while hashed.

Layout under the store's root (``BRIDGE_OUTPUT_DIR``; default beside the SQLite file):

    objects/<first two hex digits>/<sha256>   one file per distinct content, never rewritten
    tmp/<random>.part                         a download in progress

A small file (up to the store's ``inline_bytes``, ``BRIDGE_OUTPUT_INLINE_BYTES``, 4 KiB by
default) need not be stored here at all: ``PartialFile.commit`` can hand its bytes back instead
(``StoredObject.content``), and the caller keeps them in the file's database row. Such a file
makes no inode, no fsync and no rename; it is committed atomically with its row and readable by
every process on the database.

Guarantees:

- A file is streamed to ``tmp/`` in chunks and hashed as it arrives; nothing holds more than
  ``SPOOL_BYTES`` (64 KiB) of a file in memory, whatever its size: a smaller file is kept
  there until it is complete, and needs no temporary file if its content is stored already.
  Only a complete file is moved (an atomic rename) to its content address, so ``objects/``
  never holds a partial or mislabelled file.
- What the store holds is named by the database: an ``output_file`` row names its content by
  ``sha256``. A crash mid-download leaves only a ``tmp/`` file, and a crash between the rename
  and the commit an object no row names: :meth:`OutputStore.sweep`, run at start, removes both,
  so a restart neither leaks disk nor counts a file twice (it downloads again from scratch).
- The same content is stored once, whichever jobs produced it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class StoredObject:
    """A downloaded file: its content's sha256 (lowercase hex) and size in bytes, and the
    content itself when it was kept inline (not written to the store; see the module)."""

    sha256: str
    size: int
    content: bytes | None = None


#: Bytes of a download held in memory before its temporary file is made. Most outputs are
#: small: one under this makes no file when its content is stored already (every job of a kind
#: writing the same file), and otherwise one file, written once, at the commit.
SPOOL_BYTES = 64 * 1024


class PartialFile:
    """A download in progress: hashed chunk by chunk, held in memory up to the store's spool
    size, then written to ``tmp/`` (``path``, None until then).

    ``restart()`` empties it (a retried download starts over); ``commit()`` moves it to its
    content address; ``discard()`` (also on leaving a ``with`` block uncommitted) drops it.
    """

    def __init__(self, store: OutputStore) -> None:
        self._store = store
        self.path: Path | None = None
        self._file: BinaryIO | None = None
        self._spool = bytearray()
        self._digest = hashlib.sha256()
        self.size = 0
        self._ended = False

    def write(self, chunk: bytes) -> None:
        """Appends ``chunk`` and hashes it."""
        if self._file is None and len(self._spool) + len(chunk) <= self._store.spool_bytes:
            self._spool += chunk
        else:
            self._open().write(chunk)
        self._digest.update(chunk)
        self.size += len(chunk)

    def _open(self) -> BinaryIO:
        """The temporary file, made on first need with what the spool held."""
        if self._file is None:
            self.path = self._store.root / "tmp" / f"{secrets.token_hex(16)}.part"
            self._file = self.path.open("wb")
            self._file.write(self._spool)
            self._spool = bytearray()
        return self._file

    def restart(self) -> None:
        """Empties the file (a new attempt at the same download)."""
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
        self._spool = bytearray()
        self._digest = hashlib.sha256()
        self.size = 0

    def commit(self, *, inline_budget: int = 0) -> StoredObject:
        """Flushes the file to disk and moves it to ``objects/``; returns what it holds.

        A file still held in memory and no larger than the store's ``inline_bytes`` nor
        ``inline_budget`` is not written at all: its bytes come back in ``content``, for the
        caller to keep in the file's row (a budget bounds what one caller holds of several).

        When ``objects/`` already holds the same content (its digest), the partial file is
        dropped instead: no second fsync for a file every job of a kind outputs alike. The
        object's time is renewed then, so that a sweep with ``min_age`` in another process
        (one shared store) does not take an old unreferenced object this one is about to
        reference."""
        digest = self._digest.hexdigest()
        if self._file is None and self.size <= min(self._store.inline_bytes, inline_budget):
            content = bytes(self._spool)
            self.discard()
            return StoredObject(digest, self.size, content)
        target = self._store.path_of(digest)
        try:
            # Renewed if there (the one call that also tells it is there); another user's
            # object in a shared store cannot be renewed, and is there all the same.
            with contextlib.suppress(PermissionError):
                os.utime(target)
        except FileNotFoundError:
            pass  # not stored yet: this download becomes the object
        else:
            self.discard()
            return StoredObject(digest, self.size)
        file = self._open()
        file.flush()
        os.fsync(file.fileno())
        file.close()
        self._ended = True
        target.parent.mkdir(parents=True, exist_ok=True)
        assert self.path is not None
        os.replace(self.path, target)  # atomic; a concurrent copy of the same content is alike
        return StoredObject(digest, self.size)

    def discard(self) -> None:
        """Drops what was downloaded (closes and removes the file, if one was made)."""
        self._ended = True
        self._spool = bytearray()
        if self._file is None or self.path is None:
            return
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __enter__(self) -> PartialFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._ended:
            self.discard()


class OutputStore:
    """Content-addressed result files under ``root`` (created if missing); ``spool_bytes``:
    how much of a download is held in memory before its temporary file is made;
    ``inline_bytes``: the largest file ``PartialFile.commit`` may hand back instead of storing
    (at most ``spool_bytes``; 0, the default: every file is stored)."""

    def __init__(self, root: Path, spool_bytes: int = SPOOL_BYTES, inline_bytes: int = 0) -> None:
        self.root = root
        self.spool_bytes = spool_bytes
        self.inline_bytes = min(inline_bytes, spool_bytes)
        (root / "objects").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        """Where the content with this hex sha256 lives.

        Raises:
            ValueError: ``sha256`` is not 64 lowercase hex digits.
        """
        if len(sha256) != 64 or not set(sha256) <= _HEX:
            raise ValueError("not a lowercase hex sha256 digest")
        return self.root / "objects" / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        """Whether the content is stored."""
        return self.path_of(sha256).is_file()

    def partial(self) -> PartialFile:
        """A new download in progress (use it in a ``with`` block)."""
        return PartialFile(self)

    def put(self, chunks: Iterable[bytes]) -> StoredObject:
        """Stores content given in chunks (for tests and small files)."""
        with self.partial() as part:
            for chunk in chunks:
                part.write(chunk)
            return part.commit()

    def read_chunks(self, sha256: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """The stored content, chunk by chunk.

        Raises:
            FileNotFoundError: not stored.
        """
        with self.path_of(sha256).open("rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def sweep(self, referenced: set[str], *, min_age: float = 0.0) -> tuple[int, int]:
        """Removes every partial download and every object not in ``referenced``, of those not
        written for ``min_age`` seconds.

        Run it before any download starts (at the bridge's start): a download in progress
        would lose its file. A store shared by several processes (one PostgreSQL database) is
        swept with a ``min_age`` longer than any download or commit takes, so one process's
        start never removes what another is writing or about to reference.

        Returns:
            How many partial files and unreferenced objects were removed.
        """
        cutoff = time.time() - min_age

        def stale(path: Path) -> bool:
            return min_age <= 0 or path.stat().st_mtime < cutoff

        partial = 0
        for leftover in (self.root / "tmp").iterdir():
            with contextlib.suppress(FileNotFoundError):
                if stale(leftover):
                    leftover.unlink()
                    partial += 1
        unreferenced = 0
        for shard in (self.root / "objects").iterdir():
            if not shard.is_dir():
                continue
            for obj in shard.iterdir():
                if obj.name not in referenced:
                    with contextlib.suppress(FileNotFoundError):
                        if stale(obj):
                            obj.unlink()
                            unreferenced += 1
        return partial, unreferenced
