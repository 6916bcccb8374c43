"""What the migrations that create tables share: a table's columns written as ``name: type``
(``type | None`` where the column is nullable), and its indexes (``ix_<table>_<column>``).

Past migrations run through these functions: what they emit must never change, or a new
database would get another schema than an upgraded one. A new need gets a new function.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import Any, get_args

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

#: The column types, by the names the migrations give them.
INT = sa.Integer
BIGINT = sa.BigInteger
FLOAT = sa.Float
BOOL = sa.Boolean
TEXT = sa.Text
BYTES = sa.LargeBinary
STR = AutoString
TIME = UTCDateTime

ColumnType = type[sa.types.TypeEngine[Any]] | types.UnionType


def columns(types_by_name: Mapping[str, ColumnType]) -> list[sa.Column[Any]]:
    """The columns, in order: ``{"note": STR | None}`` is
    ``sa.Column("note", STR(), nullable=True)``; a type without ``| None`` is NOT NULL."""
    made: list[sa.Column[Any]] = []
    for name, kind in types_by_name.items():
        if isinstance(kind, types.UnionType):  # ``T | None``
            (of_type,) = set(get_args(kind)) - {type(None)}
            made.append(sa.Column(name, of_type(), nullable=True))
        else:
            made.append(sa.Column(name, kind(), nullable=False))
    return made


def create_table(
    table: str,
    types_by_name: Mapping[str, ColumnType],
    *constraints: sa.schema.SchemaItem,
    indexed: Iterable[str] = (),
) -> None:
    """Creates ``table`` with these columns and constraints, then a non-unique index
    ``ix_<table>_<column>`` on each ``indexed`` column, in that order."""
    op.create_table(table, *columns(types_by_name), *constraints)
    indexed = tuple(indexed)
    if indexed:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in indexed:
                batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)


def drop_table(table: str, indexed: Iterable[str] = ()) -> None:
    """Undoes ``create_table``: drops the indexes (the last created first), then ``table``."""
    indexed = tuple(indexed)
    if indexed:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in reversed(indexed):
                batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
    op.drop_table(table)
