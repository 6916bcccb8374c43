"""The result hash is exactly docs/PROTOCOL.md's definition, and the documented shell pipeline."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from bridge.errors import SpecError
from bridge.results import (
    build_manifest,
    directory_manifest,
    hash_directory,
    manifest_from_digests,
    result_hash,
    safe_input_url,
    safe_relative_path,
)

# Names without whitespace (the pipeline's xargs splits on it), with non-ASCII letters, a
# subdirectory two deep, and pairs whose order differs between code points and naive sorts.
FILES: dict[str, bytes] = {
    "out.txt": b"4\n",
    "Zeta.txt": b"upper case sorts first in C order\n",
    "a-b": b"'-' (0x2d) sorts before '/' (0x2f)\n",
    "a/b": b"in a subdirectory\n",
    "a/deeper/r\u00e9sum\u00e9.json": b'{"k": 1}\n',
    "\u00e4rger.txt": b"a-umlaut sorts after every ASCII name\n",
    "\u65e5\u672c\u8a9e/\u30c7\u30fc\u30bf.bin": bytes(range(256)),
    "empty": b"",
}

SHELL_PIPELINE = (
    "cd output && find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum"
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def test_manifest_lines_are_sha256sum_format_sorted_by_utf8_bytes() -> None:
    files = {"b.txt": b"B", "a/x": b"X", "a-y": b"Y"}
    expected = f"{_sha(b'Y')}  a-y\n{_sha(b'X')}  a/x\n{_sha(b'B')}  b.txt\n".encode()
    assert build_manifest(files) == expected
    assert result_hash(files) == hashlib.sha256(expected).digest()


def test_order_is_by_utf8_bytes_not_insertion() -> None:
    manifest = build_manifest(FILES).decode()
    paths = [line.split("  ", 1)[1] for line in manifest.splitlines()]
    assert paths == sorted(FILES, key=lambda p: p.encode("utf-8"))
    assert paths[0] == "Zeta.txt" and paths[1] == "a-b" and paths[2] == "a/b"
    assert paths[-2:] == ["\u00e4rger.txt", "\u65e5\u672c\u8a9e/\u30c7\u30fc\u30bf.bin"]
    reversed_files = dict(reversed(list(FILES.items())))
    assert result_hash(reversed_files) == result_hash(FILES)


def test_result_hash_is_32_bytes_and_content_sensitive() -> None:
    digest = result_hash(FILES)
    assert len(digest) == 32
    assert result_hash({**FILES, "out.txt": b"5\n"}) != digest
    renamed = {("out2.txt" if k == "out.txt" else k): v for k, v in FILES.items()}
    assert result_hash(renamed) != digest


def test_no_files_hash_the_empty_manifest() -> None:
    assert build_manifest({}) == b""
    assert result_hash({}) == hashlib.sha256(b"").digest()


@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("sh", "find", "sed", "sort", "xargs", "sha256sum")),
    reason="needs a POSIX shell with GNU coreutils",
)
def test_matches_the_documented_shell_pipeline(tmp_path: Path) -> None:
    _write_tree(tmp_path / "output", FILES)
    (tmp_path / "output" / "emptydir").mkdir()  # directories are not files: not in the manifest
    shell = subprocess.run(
        ["sh", "-c", SHELL_PIPELINE],
        cwd=tmp_path,
        capture_output=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
    )
    shell_hex = shell.stdout.decode().split()[0]
    assert hash_directory(tmp_path / "output").hex() == shell_hex
    assert result_hash(FILES).hex() == shell_hex


def test_directory_and_memory_agree_and_symlinks_are_skipped(tmp_path: Path) -> None:
    out = tmp_path / "output"
    _write_tree(out, FILES)
    (out / "link-to-file").symlink_to(out / "out.txt")
    (out / "link-to-dir").symlink_to(out / "a", target_is_directory=True)
    assert directory_manifest(out) == build_manifest(FILES)
    assert hash_directory(out) == result_hash(FILES)


def test_empty_directory(tmp_path: Path) -> None:
    assert hash_directory(tmp_path) == hashlib.sha256(b"").digest()


def test_hash_directory_needs_a_directory(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        hash_directory(tmp_path / "missing")


@pytest.mark.parametrize(
    "name",
    ["out.txt", "a/b/c.txt", "r\u00e9sum\u00e9.pdf", "..hidden", "a..b", ".config/x", "-dash"],
)
def test_safe_relative_path_accepts_clean_paths(name: str) -> None:
    assert safe_relative_path(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/etc/passwd",
        "../secret",
        "a/../../b",
        "a/..",
        "./a",
        "a/./b",
        "a//b",
        "a/",
        "a\\b",
        "..\\x",
        "line\nbreak",
        "tab\there",
        "nul\x00",
        "surrogate\udcff",
    ],
)
def test_safe_relative_path_refuses_unsafe_paths(name: str) -> None:
    with pytest.raises(SpecError):
        safe_relative_path(name)


def test_manifest_refuses_unsafe_paths_and_bad_digests() -> None:
    with pytest.raises(SpecError):
        build_manifest({"../x": b""})
    with pytest.raises(ValueError):
        manifest_from_digests({"x": "ABC"})
    with pytest.raises(ValueError):
        manifest_from_digests({"x": _sha(b"").upper()})


@pytest.mark.parametrize(
    ("name", "problem"),
    [("a" * 256, "longer than 255"), ("/".join(["a" * 200] * 6), "longer than 1024")],
)
def test_overlong_paths_are_refused(name: str, problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        safe_relative_path(name)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "empty"),
        ("file:///etc/passwd", "not http"),
        ("javascript:alert(1)", "not http"),
        ("https://", "without a host"),
        ("http://host:99999/x", "malformed"),
        ("http://ho st/x", "whitespace"),
        ("https://x.org/\x00", "control"),
        ("https://x.org/" + "a" * 3000, "over 2048"),
    ],
)
def test_unsafe_input_urls_are_refused(url: str, problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        safe_input_url(url, "in.txt")


def test_a_plain_https_url_is_accepted() -> None:
    url = "https://example.org/data/in.txt?version=2"
    assert safe_input_url(url) == url
