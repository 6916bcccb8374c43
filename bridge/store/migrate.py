"""``python -m bridge.store.migrate``: migrates the database named by
``BRIDGE_MIGRATE_DATABASE_URL`` to head, in a process of its own
(``bridge.store.db.migrate_in_child``).

Exits 0 once the schema is at head; ``MIGRATE_UNAVAILABLE`` (75) when the database cannot be
reached right now, 1 when the migration failed otherwise, 2 without the variable. A failure is
one line on stderr, naming the database without its password.
"""

from __future__ import annotations

import os
import sys

from bridge.errors import StoreError, StoreUnavailable
from bridge.store.db import MIGRATE_UNAVAILABLE, MIGRATE_URL_VARIABLE, open_database


def main() -> int:
    """Migrates; returns the exit status (see the module)."""
    url = os.environ.get(MIGRATE_URL_VARIABLE)
    if not url:
        print(f"{MIGRATE_URL_VARIABLE} is not set", file=sys.stderr)
        return 2
    try:
        open_database(url).dispose()
    except StoreUnavailable as exc:
        print(exc, file=sys.stderr)
        return MIGRATE_UNAVAILABLE
    except StoreError as exc:
        print(exc, file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: one line all the same, never the URL
        print(f"migrating the database failed: {type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
