"""The transaction manager's receipts: formatted as web3 formats them, keeping only the logs it
reads (``UpdateSkipped``), so a batch's hundreds of other logs cost nothing."""

from __future__ import annotations

from typing import Any

from hexbytes import HexBytes
from web3._utils.method_formatters import receipt_formatter

from bridge.tx.manager import _receipt

ESCROW = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
SKIPPED = "0x" + "ab" * 32
OTHER = "0x" + "cd" * 32


def _word(n: int) -> str:
    return "0x" + format(n, "064x")


def _log(topic: str | None, index: int) -> dict[str, Any]:
    return {
        "address": ESCROW,
        "topics": [] if topic is None else [topic, _word(index)],
        "data": "0x" + "00" * 96,
        "blockNumber": "0x10",
        "blockHash": _word(5),
        "transactionHash": _word(6),
        "transactionIndex": "0x0",
        "logIndex": hex(index),
        "removed": False,
    }


def _raw(logs: list[Any]) -> dict[str, Any]:  # Any: malformed logs too
    return {
        "blockHash": _word(5),
        "blockNumber": "0x10",
        "contractAddress": None,
        "cumulativeGasUsed": "0x5208",
        "effectiveGasPrice": "0x3b9aca00",
        "from": ESCROW,
        "gasUsed": "0x5208",
        "logs": logs,
        "logsBloom": "0x" + "00" * 256,
        "status": "0x1",
        "to": ESCROW,
        "transactionHash": _word(6),
        "transactionIndex": "0x0",
        "type": "0x2",
    }


def test_a_receipt_keeps_only_the_skipped_logs_formatted_as_web3_formats_them() -> None:
    logs = [_log(OTHER, 0), _log(SKIPPED, 1), _log(None, 2), _log(SKIPPED.upper(), 3)]
    raw = _raw(logs)
    receipt = _receipt(raw, SKIPPED)
    full = receipt_formatter(raw)
    assert [int(e["logIndex"]) for e in receipt["logs"]] == [1, 3]
    assert receipt["logs"][0] == full["logs"][1]
    assert receipt["logs"][0]["topics"][0] == HexBytes(SKIPPED)
    assert receipt["logs"][0]["address"] == full["logs"][1]["address"]  # checksummed
    for field in ("blockHash", "blockNumber", "gasUsed", "status", "transactionHash"):
        assert receipt[field] == full[field]
    assert len(raw["logs"]) == 4  # the node's answer is not changed


def test_a_receipt_with_malformed_or_no_logs_is_formatted_without_them() -> None:
    assert _receipt(_raw([{"topics": "not a list"}, 7]), SKIPPED)["logs"] == []
    no_logs = {k: v for k, v in _raw([]).items() if k != "logs"}
    assert "logs" not in _receipt(no_logs, SKIPPED)
