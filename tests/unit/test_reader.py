"""The log reader: the adaptive block range, the classification of errors, and decoding each log
on its own from a canned node answer (no network)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, cast

import pytest
from eth_abi.abi import encode
from eth_typing import ABIEvent
from eth_utils.abi import collapse_if_tuple, event_abi_to_log_topic
from eth_utils.crypto import keccak
from web3 import Web3
from web3.providers.base import BaseProvider
from web3.types import RPCEndpoint, RPCResponse

from bridge.chain.artifacts import load_artifact
from bridge.chain.reader import (
    LogPosition,
    LogReader,
    RangeSizer,
    SubmittedLog,
    is_range_error,
    spec_from_raw,
)
from bridge.chain.spec import InputFile, JobSpec, Resources
from bridge.chain.submitted import read_spec
from bridge.errors import RpcUnavailable
from tests.hostile import RAW_SPEC_ABI_TYPE, raw_spec


def test_range_starts_at_the_maximum_and_halves_down_to_one_block() -> None:
    sizer = RangeSizer(max_range=1000)
    assert sizer.size == 1000
    sizes = []
    while sizer.shrink():
        sizes.append(sizer.size)
    assert sizes == [500, 250, 125, 62, 31, 15, 7, 3, 1]
    assert sizer.size == 1
    assert not sizer.shrink(), "one block cannot shrink: the error is not about the range"


def test_range_grows_back_when_quiet_and_not_when_busy() -> None:
    sizer = RangeSizer(max_range=1000, size=10, quiet_logs=100)
    sizer.record(5)
    assert sizer.size == 20
    sizer.record(500)
    assert sizer.size == 20, "a busy range keeps its size"
    for _ in range(10):
        sizer.record(0)
    assert sizer.size == 1000, "never past the maximum"


def test_range_shrinks_after_a_dense_range() -> None:
    sizer = RangeSizer(max_range=1000, size=400, quiet_logs=100, busy_logs=2000)
    sizer.record(2001)
    assert sizer.size == 200, "more logs than busy_logs: half the blocks next time"
    sizer.record(2000)
    assert sizer.size == 200, "between quiet and busy: unchanged"
    for _ in range(20):
        sizer.record(50_000)
    assert sizer.size == 1, "never below one block"


@pytest.mark.parametrize(
    "message",
    [
        "query returned more than 10000 results",
        "Log response size exceeded",
        "eth_getLogs block range too large",
        "Read timed out. (read timeout=10)",
        "limit exceeded",
    ],
)
def test_errors_that_ask_for_a_smaller_range(message: str) -> None:
    assert is_range_error(RpcUnavailable(message))


@pytest.mark.parametrize("message", ["connection refused", "invalid params", "internal error"])
def test_other_errors_are_not_range_errors(message: str) -> None:
    assert not is_range_error(RpcUnavailable(message))


# ---------------------------------------------------------------------------- decoding


def _node_with_logs(logs: list[dict[str, object]]) -> Web3:
    """A Web3 whose node answers every ``eth_getLogs`` with ``logs`` (no network)."""

    class Canned(BaseProvider):
        def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
            assert method == "eth_getLogs"
            return {"jsonrpc": "2.0", "id": 1, "result": logs}

        def is_connected(self, show_traceback: bool = False) -> bool:
            return True

    return Web3(Canned())


def _submitted_log(spec: tuple[Any, ...], index: int, data: bytes | None = None) -> dict[str, Any]:
    abi = load_artifact("JobEscrow").abi
    (event,) = [e for e in abi if e.get("type") == "event" and e["name"] == "JobSubmitted"]
    types = [collapse_if_tuple(i) for i in event["inputs"] if not i["indexed"]]
    raw_types = [t.replace("string", "bytes") for t in types]
    if data is None:
        raw_spec = RAW_SPEC_ABI_TYPE
        spec_hash = keccak(encode([raw_spec], [spec]))
        data = encode(raw_types, [spec_hash, 10, 99, spec, 0])
    topic = "0x" + bytes(event_abi_to_log_topic(cast(ABIEvent, event))).hex()
    return {
        "topics": [topic, "0x" + index.to_bytes(32, "big").hex(), "0x" + "00" * 12 + "11" * 20],
        "data": "0x" + data.hex(),
        "blockNumber": "0x5",
        "blockHash": "0x" + "ab" * 32,
        "transactionHash": "0x" + f"{index:064x}",
        "logIndex": hex(index),
    }


def test_each_log_is_decoded_on_its_own_and_keeps_its_spec_as_the_contract_hashed_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = raw_spec()
    bad_app = raw_spec(app=b"\xff\xfe")
    garbage = _submitted_log(good, 2, data=b"\x01" * 40)  # not an ABI encoding at all
    logs = [_submitted_log(good, 1), garbage, _submitted_log(bad_app, 3)]
    w3 = _node_with_logs(logs)
    reader = LogReader(
        w3, Web3.to_checksum_address("0x" + "22" * 20), load_artifact("JobEscrow").abi
    )

    with caplog.at_level(logging.ERROR, logger="bridge.chain"):
        decoded = reader.fetch(5, 5)

    assert [d.job_id for d in decoded] == [1, 3], "the undecodable log is skipped, not the range"
    first, third = decoded
    assert isinstance(first, SubmittedLog) and isinstance(third, SubmittedLog)
    # The spec's encoding, byte for byte what the contract hashed; read where it is used.
    assert first.spec_abi == encode([RAW_SPEC_ABI_TYPE], [good])
    assert keccak(first.spec_abi) == first.spec_hash
    assert read_spec(first.spec_abi) == (spec_from_raw(good)[0], None)
    spec, unreadable = read_spec(third.spec_abi)
    assert unreadable == "app is not valid UTF-8" and spec.app == "\ufffd\ufffd"
    assert reader.undecodable == 1
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 1 and "undecodable log" in errors[0]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("data", "0x0"),  # an odd number of digits
        ("data", "0xzz"),
        ("data", "0x" + "é" * 64),  # not ASCII
        ("data", "0x00 11"),  # whitespace: no node sends it, and it is refused
        ("data", None),
        ("job id", "0x" + "gg" * 32),
        ("job id", 7),
        ("requester", "0x" + "0" * 63),
    ],
)
def test_a_log_whose_hex_fields_are_not_hex_text_is_skipped(field: str, value: object) -> None:
    bad = _submitted_log(raw_spec(), 2)
    if field == "data":
        bad["data"] = value
    else:
        bad["topics"][1 if field == "job id" else 2] = value
    logs = [_submitted_log(raw_spec(), 1), bad, _submitted_log(raw_spec(), 3)]
    reader = LogReader(
        _node_with_logs(logs),
        Web3.to_checksum_address("0x" + "22" * 20),
        load_artifact("JobEscrow").abi,
    )
    assert [d.job_id for d in reader.fetch(5, 5)] == [1, 3]
    assert reader.undecodable == 1


@pytest.mark.parametrize(
    ("field", "spec", "problem"),
    [
        ("app", raw_spec(app=b"\xc3"), "app is not valid UTF-8"),
        ("command", raw_spec(command_line=b"a\xffb"), "commandLine is not valid UTF-8"),
        ("name", raw_spec(files=((b"\xfe", b"https://x.org/a"),)), "input file 0 name"),
        ("url", raw_spec(files=((b"a", b"https://x.org/\xfe"),)), "input file 0 URL"),
    ],
)
def test_spec_from_raw_names_the_first_field_that_is_not_utf8(
    field: str, spec: tuple[Any, ...], problem: str
) -> None:
    _, unreadable = spec_from_raw(spec)
    assert unreadable is not None and unreadable.startswith(problem), field


def test_decoded_logs_equal_the_same_dataclasses_built_by_their_constructors() -> None:
    """The reader builds its frozen dataclasses without their ``__init__`` (speed): they must
    be indistinguishable from constructed ones (equality, hash, repr, ``replace``)."""
    logs = [_submitted_log(raw_spec(), 7)]
    reader = LogReader(
        _node_with_logs(logs),
        Web3.to_checksum_address("0x" + "22" * 20),
        load_artifact("JobEscrow").abi,
    )
    (decoded,) = reader.fetch(5, 5)
    assert isinstance(decoded, SubmittedLog)
    built = SubmittedLog(
        at=LogPosition(*astuple_shallow(decoded.at)),
        job_id=decoded.job_id,
        requester=decoded.requester,
        spec_hash=decoded.spec_hash,
        payment=decoded.payment,
        deadline=decoded.deadline,
        spec_abi=decoded.spec_abi,
        callback_gas_limit=decoded.callback_gas_limit,
    )
    assert decoded == built and hash(decoded) == hash(built) and repr(decoded) == repr(built)
    assert dataclasses.replace(decoded, job_id=8) == dataclasses.replace(built, job_id=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.job_id = 9  # type: ignore[misc]
    # The spec read from it is built the same way.
    spec, _ = read_spec(decoded.spec_abi)
    spec_built = JobSpec(
        spec.app,
        spec.command_line,
        Resources(*astuple_shallow(spec.specs)),
        spec.max_hours,
        tuple(InputFile(f.filename, f.url) for f in spec.input_files),
    )
    assert spec == spec_built and hash(spec) == hash(spec_built) and repr(spec) == repr(spec_built)
    assert dataclasses.replace(spec, app="x") == dataclasses.replace(spec_built, app="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.app = "y"  # type: ignore[misc]


def astuple_shallow(obj: Any) -> tuple[Any, ...]:
    """A dataclass's field values in order (not recursing like ``dataclasses.astuple``)."""
    return tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))
