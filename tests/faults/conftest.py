"""Fixtures of the fault suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import fault_database


@pytest.fixture
def fault_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The test's database URL: ``$CE_FAULTS_DB`` (a SQLite file by default, or a PostgreSQL
    database of its own), or the backend given by ``indirect`` parametrisation."""
    with fault_database(tmp_path, getattr(request, "param", None)) as url:
        yield url
