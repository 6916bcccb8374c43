"""Logging setup: plain or JSON lines, with the job id, remote job id and tx hash as fields;
and the one redaction of URLs that may carry credentials.

RPC URLs often carry a provider key: user info (``https://user:pass@host``), a query value
(``?apikey=...``) or a path token (``/v3/<key>``). ``redact_url`` is the one way a URL is
printed; ``url_secrets`` lists those parts of a URL, and ``redact`` removes them from any text
(an exception's message quoting the request path, say). ``install_redaction`` puts a filter on
the bridge's log handlers that does the same to every line, as a last guard.

Code logs with ``extra={"job_id": ..., "remote_job_id": ..., "tx_hash": ...}`` where it has
them (a batch transaction carries ``job_ids``, every job it writes); the JSON formatter emits those
as fields, so one job can be followed across components: the scanner, the CE worker and the
transaction manager.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

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


REDACTED = "***"
#: A path segment that looks like a key or token: 16+ characters of letters, digits, - or _.
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{16,}$")


def redact_url(url: str) -> str:
    """``url`` with its user info, every query value and every token-like path segment
    replaced by ``***``; scheme, host, port and the other path segments kept. A URL that
    cannot be parsed becomes ``***``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REDACTED
    netloc = (f"{REDACTED}@" if "@" in parts.netloc else "") + host
    if port is not None:
        netloc += f":{port}"
    path = "/".join(REDACTED if _TOKEN.match(seg) else seg for seg in parts.path.split("/"))
    query = "&".join(
        f"{name}={REDACTED}" for name, _ in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def url_secrets(url: str) -> tuple[str, ...]:
    """The parts of ``url`` that may be credentials (user info, query values, token-like path
    segments), as they appear in the URL and percent-decoded, longest first."""
    found: set[str] = set()
    try:
        parts = urlsplit(url)
    except ValueError:
        return (url,) if url else ()
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found.update({userinfo, *userinfo.split(":", 1)})
    for _, value in parse_qsl(parts.query, keep_blank_values=True):
        found.add(value)
    for seg in parts.path.split("/"):
        if _TOKEN.match(seg):
            found.add(seg)
    found |= {unquote(s) for s in found}
    return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and its exception text) without ``secrets``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redacts ``record`` in place; always lets it through."""
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True


def install_redaction(*urls: str) -> RedactingFilter:
    """Adds a filter removing the credentials of ``urls`` from every line of the handlers of
    the ``bridge`` logger and of the root logger (present now). Returns the filter."""
    secrets = [s for url in urls for s in url_secrets(url)]
    flt = RedactingFilter(secrets)
    for logger in (logging.getLogger("bridge"), logging.getLogger()):
        for handler in logger.handlers:
            if not any(
                isinstance(f, RedactingFilter) and f.secrets == flt.secrets for f in handler.filters
            ):
                handler.addFilter(flt)
    return flt
