"""Logging setup: plain or JSON lines, with the job id, remote job id and tx hash as fields.

Code logs with ``extra={"job_id": ..., "remote_job_id": ..., "tx_hash": ...}`` where it has
them (a batch transaction carries ``job_ids``, every job it writes); the JSON formatter emits those
as fields, so one job can be followed across components: the scanner, the CE worker and the
transaction manager.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_FIELDS = ("job_id", "job_ids", "remote_job_id", "tx_hash")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the known context fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Formats ``record`` as a JSON line."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(*, json_logs: bool = False, level: int = logging.INFO) -> None:
    """Sends the ``bridge`` loggers to stderr, as JSON lines when ``json_logs``."""
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("bridge")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
