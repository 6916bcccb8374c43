"""What keeps one `run` process's memory down: malloc arenas capped, SQLite page caches small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from bridge.store.db import open_database

_PROBE = """
import os, sys
from bridge.lifecycle import limit_malloc_arenas
print(limit_malloc_arenas())
"""


def _probe(env: dict[str, str]) -> str:
    return subprocess.run(
        [sys.executable, "-c", _PROBE],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    ).stdout.strip()


def test_the_malloc_arenas_are_capped_unless_the_environment_says_otherwise() -> None:
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    # glibc (this machine's, and CI's): the cap is set; MALLOC_ARENA_MAX in the env wins.
    assert _probe(base) == "True"
    assert _probe({**base, "MALLOC_ARENA_MAX": "4"}) == "False"


def test_every_sqlite_connection_keeps_a_small_page_cache(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with db.connect() as a, db.connect() as b:
        for connection in (a, b):
            assert connection.execute(text("PRAGMA cache_size")).scalar() == -512
