"""Builders for hostile submissions: what a requester can send that ``JobSpec`` cannot express.

Solidity does not check that a ``string`` is UTF-8, so a requester can submit any bytes as the
app, the command line, a file name or a URL. ``submit_raw`` builds ``submitJob``'s calldata with
eth_abi, encoding each string field as raw ``bytes`` (the same ABI encoding).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import httpx
from eth_abi.abi import encode
from eth_utils.abi import collapse_if_tuple
from web3 import Web3
from web3.contract import Contract
from web3.types import TxParams, Wei

from bridge.chain.spec import JOB_SPEC_ABI_TYPE

RAW_SPEC_ABI_TYPE = JOB_SPEC_ABI_TYPE.replace("string", "bytes")


def _submitted_args(escrow: Contract) -> str:
    """The argument types of ``JobSubmitted`` as its topic's signature spells them."""
    abi: list[dict[str, Any]] = [dict(e) for e in escrow.abi]
    (event,) = [e for e in abi if e.get("type") == "event" and e.get("name") == "JobSubmitted"]
    return ",".join(collapse_if_tuple(dict(i)) for i in event["inputs"])


def raw_spec(
    app: bytes = b"charityengine:wolframengine",
    command_line: bytes = b"echo hostile > output/out.txt",
    files: tuple[tuple[bytes, bytes], ...] = (),
    *,
    vcpus: int = 1,
    max_hours: int = 1,
) -> tuple[Any, ...]:
    """A spec tuple whose strings are raw bytes (any bytes, UTF-8 or not)."""
    return (app, command_line, (vcpus, 256, 256, 0, 0), max_hours, list(files))


def submit_raw(
    w3: Web3,
    escrow: Contract,
    sender: str,
    spec: tuple[Any, ...],
    callback_gas_limit: int = 0,
    *,
    value: int | None = None,
) -> tuple[int, int]:
    """Submits ``spec`` (raw bytes strings) paying the quote of a same-shaped UTF-8 spec.

    Returns:
        The new job id (read from the event's topic: web3 cannot decode such an event) and the
        payment.
    """
    if value is None:
        printable = (
            "x" * len(spec[0]),
            "x" * len(spec[1]),
            spec[2],
            spec[3],
            [("x" * len(n), "x" * len(u)) for n, u in spec[4]],
        )
        value = int(escrow.functions.quote(printable, callback_gas_limit).call())
    selector = bytes(Web3.keccak(text=f"submitJob({JOB_SPEC_ABI_TYPE},uint32)"))[:4]
    data = selector + encode([RAW_SPEC_ABI_TYPE, "uint32"], [spec, callback_gas_limit])
    params: TxParams = {
        "from": Web3.to_checksum_address(sender),
        "to": escrow.address,
        "data": Web3.to_hex(data),
        "value": Wei(value),
        "gas": 1_000_000,
    }
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(params), timeout=60)
    assert receipt["status"] == 1, "submitJob with a raw spec reverted"
    topic = bytes(Web3.keccak(text=f"JobSubmitted({_submitted_args(escrow)})"))
    (entry,) = [e for e in receipt["logs"] if bytes(e["topics"][0]) == topic]
    return int.from_bytes(bytes(entry["topics"][1]), "big"), value


def chunked_post(
    api: str, path: str, total: int, headers: bytes = b"", chunk_size: int = 1024 * 1024
) -> tuple[int, int]:
    """Sends a chunked POST of up to ``total`` bytes to ``api`` + ``path`` over a raw socket,
    stopping as soon as an answer arrives or the server closes the connection.

    Returns:
        The HTTP status of the answer and the body bytes sent before it came.
    """
    url = httpx.URL(api)
    assert url.port is not None
    sock = socket.create_connection((url.host, url.port), timeout=30)
    try:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
            + headers
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n" % chunk_size + b"a" * chunk_size + b"\r\n"
        sent, answer = 0, b""
        sock.setblocking(False)
        while sent < total:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.sendall(chunk)
            except BlockingIOError:
                continue
            except OSError:
                break  # the server closed the connection: it will not read the rest
            sent += chunk_size
        sock.setblocking(True)
        while b"\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
        return int(answer.split(b" ", 2)[1]), sent
    finally:
        sock.close()
