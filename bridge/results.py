"""The result hash of a job's outputs, as docs/PROTOCOL.md "Result hash" defines it (a contract).

For the files under a job's ``output/`` directory: each file's path relative to ``output/`` with
``/`` separators, sorted by the path's UTF-8 bytes; the manifest is one line per file,
``<lowercase hex sha256 of the content>  <path>\\n``; ``resultHash = sha256(manifest)``. So::

    cd output && find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum

reproduces it for any non-empty set of files whose names have no whitespace (with no files at
all the manifest is empty and the hash is ``sha256(b"")``, while GNU ``xargs`` without ``-r``
would hash stdin instead).

Paths are checked by :func:`safe_relative_path`, which also guards input file names and the
writing of downloaded files to disk: a path that could escape its directory, or that
``sha256sum`` would print escaped, is refused with :class:`~bridge.errors.SpecError`.
Everything here is pure except :func:`directory_manifest` / :func:`hash_directory`, which read a
directory.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from bridge.errors import SpecError

_CHUNK = 1024 * 1024
_HEX = frozenset("0123456789abcdef")
#: Longest clean path (UTF-8 bytes) and longest segment (a file system's name limit).
MAX_PATH_BYTES = 1024
MAX_SEGMENT_BYTES = 255
#: Longest input file URL a spec may carry (UTF-8 bytes).
MAX_URL_BYTES = 2048


def safe_relative_path(name: str) -> str:
    """Check that ``name`` is a clean relative path (under ``output/``, or an input file's
    name) and return it unchanged.

    A clean path is non-empty UTF-8, ``/``-separated, and has no empty, ``.`` or ``..``
    segment (so no leading ``/``, no ``//``, no trailing ``/``), no backslash and no control
    character (``sha256sum`` escapes backslashes and newlines, which would break the manifest),
    and is at most ``MAX_PATH_BYTES`` long with segments of at most ``MAX_SEGMENT_BYTES``.

    Args:
        name: A file name as a job spec or an output listing gives it.

    Returns:
        ``name`` itself: clean paths are never rewritten, so one file has one spelling.

    Raises:
        SpecError: ``name`` is not a clean relative path.
    """
    if not name:
        raise SpecError("unsafe file path: empty")
    shown = ascii(name)[:120]
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SpecError(f"unsafe file path {shown}: not valid UTF-8") from exc
    if len(encoded) > MAX_PATH_BYTES:
        raise SpecError(f"unsafe file path {shown}: longer than {MAX_PATH_BYTES} bytes")
    if "\\" in name:
        raise SpecError(f"unsafe file path {shown}: contains a backslash")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise SpecError(f"unsafe file path {shown}: contains a control character")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise SpecError(
                f"unsafe file path {shown}: absolute, or has an empty, '.' or '..' segment"
            )
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise SpecError(f"unsafe file path {shown}: a name longer than {MAX_SEGMENT_BYTES}")
    return name


def safe_input_url(url: str, filename: str = "") -> str:
    """Check that ``url`` is a well-formed absolute http(s) URL CE can fetch; return it.

    Well-formed: at most ``MAX_URL_BYTES`` of UTF-8, no whitespace or control character,
    scheme ``http`` or ``https``, a host, and a numeric port if one is given.

    Raises:
        SpecError: naming the input file (by ``filename``) and what is wrong.
    """
    what = f"input file {ascii(filename)[:120]}" if filename else "input file"
    if not url:
        raise SpecError(f"{what} has an empty URL")
    if len(url.encode("utf-8", "replace")) > MAX_URL_BYTES:
        raise SpecError(f"{what} has a URL over {MAX_URL_BYTES} bytes")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise SpecError(f"{what} has a URL with whitespace or a control character")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError as exc:
        raise SpecError(f"{what} has a malformed URL") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise SpecError(f"{what} has a URL that is not http(s)")
    if not parts.hostname:
        raise SpecError(f"{what} has a URL without a host")
    return url


def manifest_from_digests(digests: Mapping[str, str]) -> bytes:
    """Build the manifest from each path's lowercase hex sha256.

    Raises:
        SpecError: A path is not clean (see :func:`safe_relative_path`).
        ValueError: A digest is not 64 lowercase hex characters.
    """
    lines: list[bytes] = []
    for path in sorted(digests, key=lambda p: safe_relative_path(p).encode("utf-8")):
        digest = digests[path]
        if len(digest) != 64 or not set(digest) <= _HEX:
            raise ValueError(f"not a lowercase hex sha256 digest: {digest!r}")
        lines.append(f"{digest}  {path}\n".encode())
    return b"".join(lines)


def build_manifest(files: Mapping[str, bytes]) -> bytes:
    """Build the manifest of in-memory files.

    Args:
        files: Content by path relative to ``output/`` (``/`` separators).

    Returns:
        The manifest bytes: ``<sha256 hex>  <path>\\n`` per file, sorted by UTF-8 path bytes.

    Raises:
        SpecError: A path is not clean (see :func:`safe_relative_path`).
    """
    return manifest_from_digests({p: hashlib.sha256(c).hexdigest() for p, c in files.items()})


def result_hash(files: Mapping[str, bytes]) -> bytes:
    """Return the 32-byte ``resultHash`` of in-memory files: ``sha256(build_manifest(files))``.

    Raises:
        SpecError: A path is not clean (see :func:`safe_relative_path`).
    """
    return hashlib.sha256(build_manifest(files)).digest()


def directory_manifest(path: Path) -> bytes:
    """Build the manifest of the regular files under directory ``path`` (an ``output/`` dir).

    As ``find . -type f`` does, only regular files count and symbolic links (to files or
    directories) are not followed. Files are hashed in chunks, so size does not matter.

    Raises:
        SpecError: A file's relative path is not clean.
        NotADirectoryError: ``path`` is not a directory.
    """
    if not path.is_dir():
        raise NotADirectoryError(str(path))
    return manifest_from_digests(dict(_digest_tree(path)))


def hash_directory(path: Path) -> bytes:
    """Return the 32-byte ``resultHash`` of the files under directory ``path``.

    Raises:
        SpecError: A file's relative path is not clean.
        NotADirectoryError: ``path`` is not a directory.
    """
    return hashlib.sha256(directory_manifest(path)).digest()


def _digest_tree(root: Path) -> Iterable[tuple[str, str]]:
    for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
        for filename in filenames:
            full = Path(dirpath, filename)
            if not stat.S_ISREG(full.lstat().st_mode):
                continue
            relative = full.relative_to(root).as_posix()
            yield relative, _file_sha256(full)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
