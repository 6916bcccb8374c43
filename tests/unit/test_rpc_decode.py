"""The JSON-RPC transport's parsing (``bridge.chain.rpc._decode``): orjson, to exactly what
``json.loads`` gives, and ``json.loads``'s own error where the body is not JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.chain.rpc import _decode
from bridge.chain.submitted import json_has_float

#: A log as nodes send it (every quantity a hex string).
LOG = {
    "address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
    "topics": ["0xf92c5e8c53b43c26e08991ec04181f33c1bd74b41b88bfda32aa22713457bc0c", "0x01"],
    "data": "0x" + "00" * 64,
    "blockNumber": "0x4",
    "logIndex": "0x0",
    "removed": False,
}

SAME_AS_JSON_LOADS = [
    {"jsonrpc": "2.0", "id": 1, "result": [LOG, LOG]},
    {"jsonrpc": "2.0", "id": 7, "result": None},
    {"jsonrpc": "2.0", "id": 2, "error": {"code": -32000, "message": "execution reverted"}},
    # A bare integer beyond 64 bits (orjson alone would read 1.2345678901234568e+29).
    {
        "jsonrpc": "2.0",
        "id": 3,
        "error": {"code": 3, "message": "x", "data": 12345678901234567890123456789},
    },
    {"jsonrpc": "2.0", "id": 4, "result": {"deep": [[{"n": -(2**70)}]]}},
    {"jsonrpc": "2.0", "id": 5, "result": [2**64 - 1, -(2**63), 2**64, -(2**63) - 1]},
    # Floats are legitimate in a few answers (eth_feeHistory's gasUsedRatio).
    {"jsonrpc": "2.0", "id": 6, "result": {"gasUsedRatio": [0.5, 0.1234567890123, 1e-7]}},
]


@pytest.mark.parametrize("answer", SAME_AS_JSON_LOADS)
def test_an_answer_parses_to_what_json_loads_gives(answer: Any) -> None:
    raw = json.dumps(answer).encode()
    parsed = _decode(raw)
    assert parsed == json.loads(raw) == answer
    assert repr(parsed) == repr(json.loads(raw))  # ints stay ints, floats stay floats


@pytest.mark.parametrize(
    "raw",
    [
        b'{"result": NaN}',  # json.loads takes these; orjson does not
        b'{"result": [Infinity, -Infinity]}',
        b'{"result": "\\ud800"}',
        b'\xef\xbb\xbf{"result": 1}',  # a UTF-8 byte order mark
        '{"result": "é"}'.encode("utf-16"),
        b'{"result": 1e400}',
    ],
)
def test_what_orjson_refuses_and_json_loads_takes_is_parsed_by_json_loads(raw: bytes) -> None:
    try:
        expected: Any = json.loads(raw)
    except ValueError as exc:
        with pytest.raises(type(exc)) as raised:
            _decode(raw)
        assert str(raised.value) == str(exc)
        return
    assert repr(_decode(raw)) == repr(expected)


@pytest.mark.parametrize(
    "raw",
    [b"", b"<html>502 Bad Gateway</html>", b'{"jsonrpc": "2.0",', b"[1,]", b"\xff\xfe\xfd"],
)
def test_a_body_that_is_not_json_raises_what_json_loads_raises(raw: bytes) -> None:
    with pytest.raises(ValueError) as expected:
        json.loads(raw)
    with pytest.raises(ValueError) as raised:
        _decode(raw)
    assert type(raised.value) is type(expected.value)
    assert str(raised.value) == str(expected.value)


def test_json_has_float_finds_a_float_at_any_depth() -> None:
    assert json_has_float(1.5)
    assert json_has_float({"a": [1, {"b": ["x", [0.0]]}]})
    assert not json_has_float({"a": [1, {"b": ["x", [None, True, 2**70]]}]})
    assert not json_has_float([[[[[]]]], {}])
    nested: Any = 1e3
    for _ in range(1000):
        nested = [nested]
    assert json_has_float(nested)
