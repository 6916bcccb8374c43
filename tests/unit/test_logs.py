"""Redaction of credentials in URLs (user info, query values, path tokens)."""

from __future__ import annotations

import logging

import pytest

from bridge.logs import RedactingFilter, redact, redact_url, url_secrets

KEY = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        (f"https://mainnet.infura.io/v3/{KEY}", "https://mainnet.infura.io/v3/***"),
        ("https://u:p4ss@node.example/rpc", "https://***@node.example/rpc"),
        ("https://node.example/rpc?apikey=s3cr3t&x=1", "https://node.example/rpc?apikey=***&x=***"),
        ("http://[::1", "***"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_secrets_of_a_url_are_removed_from_any_text() -> None:
    url = f"https://user:pa55word@node.example/v2/{KEY}?apikey=s3cr3tkey"
    secrets = url_secrets(url)
    text = f"Max retries exceeded with url: /v2/{KEY}?apikey=s3cr3tkey (user:pa55word)"
    clean = redact(text, secrets)
    assert KEY not in clean and "s3cr3tkey" not in clean and "pa55word" not in clean


def test_the_log_filter_redacts_messages_and_tracebacks() -> None:
    flt = RedactingFilter(url_secrets(f"https://node.example/v3/{KEY}"))
    try:
        raise ValueError(f"cannot reach /v3/{KEY}")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "bridge.x", logging.ERROR, __file__, 1, "node at %s", (f"/v3/{KEY}",), sys.exc_info()
        )
    assert flt.filter(record)
    assert KEY not in record.getMessage() and KEY not in (record.exc_text or "")
