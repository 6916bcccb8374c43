"""Migration 0009: a database from before it keeps every job's spec, now as the bytes the
contract hashed (``job.spec_abi``), on SQLite and PostgreSQL, and goes back down unchanged."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, create_engine, inspect, text

from bridge.chain.spec import spec_hash
from bridge.chain.submitted import spec_encoding
from bridge.engine.codec import spec_to_json, stored_spec
from bridge.store.db import MIGRATIONS, SCHEMA_HEAD
from tests.builders import spec as typical_spec
from tests.pg import postgres_database


def _migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        if down:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)


@contextlib.contextmanager
def _engine(kind: str, tmp_path: Path) -> Iterator[Engine]:
    if kind == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'bridge.db'}")
        yield engine
        engine.dispose()
        return
    with postgres_database() as url:
        engine = create_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def _insert(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Inserts job rows as the schema before 0009 holds them: the given columns, and every
    other column that may not be NULL filled with a value of its type."""
    columns = [c for c in inspect(engine).get_columns("job") if not c["nullable"]]
    filler: dict[str, Any] = {}
    for column in columns:
        kind = column["type"].python_type
        plain = {int: 0, float: 0.0, bool: False, str: "x"}
        filler[column["name"]] = plain[kind] if kind in plain else datetime.now(UTC)
    table = Table("job", MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{**filler, **row} for row in rows])


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_every_stored_spec_becomes_the_bytes_its_hash_was_taken_of(
    kind: str, tmp_path: Path
) -> None:
    spec = typical_spec()
    hashed = "0x" + spec_hash(spec).hex()
    with _engine(kind, tmp_path) as engine:
        _migrate(engine, "0008_networks")
        # 2,500 jobs (the migration walks them a chunk at a time), and one whose stored JSON
        # does not read as a spec at all.
        good = {"spec_json": spec_to_json(spec), "spec_hash": hashed}
        _insert(engine, [{"job_id": i, **good} for i in range(2500)])
        _insert(engine, [{"job_id": 9000, "spec_json": "not json", "spec_hash": hashed}])
        _migrate(engine, "head")
        with engine.connect() as conn:
            rows: dict[int, bytes] = dict(
                conn.execute(text("SELECT job_id, spec_abi FROM job")).all()
            )
        assert "spec_json" not in {c["name"] for c in inspect(engine).get_columns("job")}
        assert len(rows) == 2501
        assert all(bytes(rows[i]) == spec_encoding(spec) for i in range(2500))
        assert stored_spec(bytes(rows[0]), hashed) == (spec, None)
        assert bytes(rows[9000]) == b""  # failed by the worker, never sent
        assert stored_spec(b"", hashed)[0] is None

        _migrate(engine, "0008_networks", down=True)
        with engine.connect() as conn:
            back: dict[int, str] = dict(
                conn.execute(text("SELECT job_id, spec_json FROM job")).all()
            )
        assert back[0] == spec_to_json(spec) and back[2499] == spec_to_json(spec)
        assert back[9000] == "{}"
        _migrate(engine, "head")
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == SCHEMA_HEAD
