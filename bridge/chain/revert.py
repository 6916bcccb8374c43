"""Decoding revert data into named custom errors.

A revert carries ``selector(4 bytes) ++ abi.encode(args)``. ``decode_revert`` maps the selector of
every ``error`` in a contract ABI (JobEscrow's own, the OpenZeppelin ones it inherits such as
``AccessControlUnauthorizedAccount``, and Solidity's built-in ``Error(string)`` and
``Panic(uint256)``) to its name and decodes the arguments, returning a
``bridge.errors.ContractRevert``. ``error_name`` names a bare selector, as the escrow's
``UpdateSkipped(jobId, status, reason)`` event carries it. ``revert_data`` digs the revert bytes
out of the exceptions web3 raises for a reverted ``eth_call`` or ``eth_estimateGas``.

Pure: no I/O. Unknown selectors and undecodable arguments never raise; they come back as
``UnknownError`` / the bare name, so a caller always gets something to log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from bridge.errors import ContractRevert

#: Errors every Solidity contract can revert with, whatever its ABI says.
BUILTIN_ERRORS: tuple[dict[str, Any], ...] = (
    {"type": "error", "name": "Error", "inputs": [{"name": "message", "type": "string"}]},
    {"type": "error", "name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]},
)
#: OpenZeppelin 5's AccessControl error, recognised even with an ABI that lacks it.
ACCESS_CONTROL_UNAUTHORIZED: dict[str, Any] = {
    "type": "error",
    "name": "AccessControlUnauthorizedAccount",
    "inputs": [
        {"name": "account", "type": "address"},
        {"name": "neededRole", "type": "bytes32"},
    ],
}
#: Name given to a revert whose selector is in no known ABI (its args hold the selector).
UNKNOWN_ERROR = "UnknownError"
#: Name given to a revert without any data (``revert()``, out of gas, a failed ``require``).
EMPTY_REVERT = "EmptyRevert"


@dataclass(frozen=True)
class ErrorAbi:
    """One custom error: its name, canonical signature and argument types."""

    name: str
    signature: str
    types: tuple[str, ...]

    @property
    def selector(self) -> bytes:
        """The first four bytes of ``keccak256(signature)``."""
        return keccak(text=self.signature)[:4]


def _canonical_type(param: Mapping[str, Any]) -> str:
    """The canonical ABI type of a parameter, tuples expanded (``(uint256,string)[]``)."""
    kind = str(param["type"])
    if not kind.startswith("tuple"):
        return kind
    inner = ",".join(_canonical_type(c) for c in param.get("components", []))
    return f"({inner}){kind[len('tuple') :]}"


def _error_abis(abi: Iterable[Mapping[str, Any]]) -> dict[bytes, ErrorAbi]:
    found: dict[bytes, ErrorAbi] = {}
    for entry in (*BUILTIN_ERRORS, ACCESS_CONTROL_UNAUTHORIZED, *abi):
        if entry.get("type") != "error":
            continue
        types = tuple(_canonical_type(p) for p in entry.get("inputs", []))
        error = ErrorAbi(str(entry["name"]), f"{entry['name']}({','.join(types)})", types)
        found[error.selector] = error
    return found


def error_selectors(abi: Sequence[Mapping[str, Any]]) -> dict[bytes, ErrorAbi]:
    """Every custom error of ``abi`` (plus the built-in and AccessControl ones) by selector."""
    return _error_abis(abi)


def error_name(selector: bytes, abi: Sequence[Mapping[str, Any]]) -> str:
    """The name of the error whose 4-byte selector is ``selector``, or ``0x<hex>`` if unknown."""
    error = error_selectors(abi).get(bytes(selector[:4]))
    return error.name if error is not None else "0x" + bytes(selector[:4]).hex()


def decode_revert(data: bytes, abi: Sequence[Mapping[str, Any]]) -> ContractRevert:
    """Decodes revert ``data`` against the errors of ``abi``.

    Args:
        data: the revert bytes (selector followed by the ABI-encoded arguments).
        abi: a contract ABI (a list of JSON entries); its ``error`` entries are used.

    Returns:
        A ``ContractRevert`` whose ``name`` is the error's name and ``args_`` its decoded
        arguments; ``EmptyRevert`` for no data, ``UnknownError`` (args: the selector in hex) for a
        selector in no known ABI. Arguments that do not decode are left out, the name is kept.
    """
    raw = bytes(data)
    if len(raw) < 4:
        return ContractRevert(EMPTY_REVERT, (), raw)
    error = error_selectors(abi).get(raw[:4])
    if error is None:
        return ContractRevert(UNKNOWN_ERROR, ("0x" + raw[:4].hex(),), raw)
    try:
        args = tuple(
            to_checksum_address(value) if kind == "address" else value
            for kind, value in zip(error.types, decode(list(error.types), raw[4:]), strict=True)
        )
    except (DecodingError, ValueError, OverflowError):
        args = ()
    return ContractRevert(error.name, args, raw)


def _hex_bytes(value: object) -> bytes | None:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("Reverted "):
            text = text[len("Reverted ") :]
        if text.startswith("0x"):
            try:
                return bytes(HexBytes(text))
            except ValueError:
                return None
    if isinstance(value, Mapping):
        return _hex_bytes(value.get("data"))
    return None


def revert_data(exc: BaseException) -> bytes | None:
    """The revert bytes carried by a web3 exception, or None if it has none.

    Handles ``ContractLogicError``/``ContractCustomError``/``ContractPanicError`` (``.data`` is
    a hex string or a dict with ``data``) and ``Web3RPCError`` (``rpc_response.error.data``).
    """
    found = _hex_bytes(getattr(exc, "data", None))
    if found is not None:
        return found
    response = getattr(exc, "rpc_response", None)
    if isinstance(response, Mapping):
        error = response.get("error")
        if isinstance(error, Mapping):
            return _hex_bytes(error.get("data"))
    return None
