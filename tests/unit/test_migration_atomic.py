"""A migration that stops half-way on SQLite leaves nothing behind (a crash loop otherwise).

SQLite's DDL is transactional, but Python's sqlite3 runs a CREATE TABLE outside any transaction
unless one is open: a first start killed during its migration used to leave some tables without
their ``alembic_version`` row, and every later start failed with "table ... already exists".
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.devchain import free_port
from bridge.errors import StoreError, StoreUnavailable
from bridge.store.db import MIGRATIONS, SCHEMA_HEAD, migrate_in_child, open_database
from tests.pg import postgres_available


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


@pytest.mark.parametrize("migrate_apart", [False, True], ids=["in-process", "in-a-child"])
def test_a_migration_that_fails_half_way_leaves_no_table_and_the_next_start_migrates(
    tmp_path: Path, migrate_apart: bool
) -> None:
    # ``migrate_apart``: as ``ce-bridge run`` opens it, the migration in a child interpreter,
    # whose failure comes back as the same one line.
    path = tmp_path / "bridge.db"
    url = f"sqlite:///{path}"
    # A table that the first migration creates last makes it fail after its other tables.
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE update_outbox (x INTEGER)")
    with pytest.raises(StoreError, match="update_outbox") as failed:
        open_database(url, migrate_apart=migrate_apart)
    assert "\n" not in str(failed.value)
    assert "Traceback" not in str(failed.value)
    assert _tables(path) == {"update_outbox"}  # chain_tx, job, ... rolled back with it

    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE update_outbox")
    open_database(url, migrate_apart=migrate_apart).dispose()
    assert {"job", "chain_tx", "update_outbox", "alembic_version"} <= _tables(path)


def test_the_schema_head_is_alembics() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_HEAD


def test_a_database_at_head_is_opened_without_loading_alembic(tmp_path: Path) -> None:
    # A fresh interpreter for each start, as ``ce-bridge run`` is: the first migrates (and
    # loads Alembic), the next finds the schema at head and never imports it.
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    start = (
        "import sys; from bridge.store.db import open_database; "
        f"open_database({url!r}).dispose(); print('alembic' in sys.modules)"
    )

    def alembic_loaded() -> bool:
        out = subprocess.run(
            [sys.executable, "-c", start], capture_output=True, text=True, check=True
        ).stdout
        return out.strip() == "True"

    assert alembic_loaded()
    assert {"job", "alembic_version"} <= _tables(tmp_path / "bridge.db")
    assert not alembic_loaded()
    assert not alembic_loaded()


def test_run_migrates_in_a_child_and_never_loads_alembic(tmp_path: Path) -> None:
    # ``ce-bridge run`` opens its database with ``migrate_apart``: the first start's migration
    # runs in a child interpreter, and the long-running process never imports Alembic.
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    start = (
        "import sys; from bridge.store.db import open_database; "
        f"open_database({url!r}, migrate_apart=True).dispose(); print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", start], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    with sqlite3.connect(tmp_path / "bridge.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (SCHEMA_HEAD,)
        ]


@pytest.mark.skipif(not postgres_available(), reason="no PostgreSQL server on 127.0.0.1:5432")
def test_the_childs_failure_names_the_database_without_its_password() -> None:
    secret = "s3cret-Pw-9f2"
    with pytest.raises(StoreError) as failed:
        migrate_in_child(f"postgresql+psycopg://postgres:{secret}@127.0.0.1:5432/ce_no_such_db_x")
    assert not isinstance(failed.value, StoreUnavailable)  # no retry creates the database
    assert 'database "ce_no_such_db_x" does not exist' in str(failed.value)
    assert secret not in str(failed.value)


def test_a_database_the_child_cannot_reach_is_worth_retrying() -> None:
    port = free_port()  # nothing listens there
    secret = "s3cret-Pw-77a"
    with pytest.raises(StoreUnavailable) as failed:
        migrate_in_child(f"postgresql+psycopg://postgres:{secret}@127.0.0.1:{port}/x")
    assert "cannot connect to PostgreSQL" in str(failed.value)
    assert secret not in str(failed.value)
