"""Decoding revert data and ``UpdateSkipped`` reasons against the JobEscrow ABI."""

from __future__ import annotations

from eth_abi.abi import encode
from web3 import Web3
from web3.exceptions import ContractCustomError, Web3RPCError

from bridge.chain.artifacts import load_artifact
from bridge.chain.revert import EMPTY_REVERT, UNKNOWN_ERROR, decode_revert, error_name, revert_data
from bridge.errors import ContractRevert

ABI = load_artifact("JobEscrow").abi
OPERATOR_ROLE = bytes(Web3.keccak(text="OPERATOR_ROLE"))
ACCOUNT = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


def selector(signature: str) -> bytes:
    return bytes(Web3.keccak(text=signature)[:4])


def test_decodes_a_custom_error_with_its_arguments() -> None:
    data = selector("JobNotFound(uint256)") + encode(["uint256"], [42])
    revert = decode_revert(data, ABI)
    assert isinstance(revert, ContractRevert)
    assert (revert.name, revert.args_, revert.raw) == ("JobNotFound", (42,), data)
    assert "JobNotFound(42)" in str(revert)


def test_decodes_enum_arguments_as_integers() -> None:
    data = selector("InvalidTransition(uint256,uint8,uint8)") + encode(
        ["uint256", "uint8", "uint8"], [7, 4, 6]
    )
    assert decode_revert(data, ABI).args_ == (7, 4, 6)


def test_decodes_access_control_even_without_it_in_the_abi() -> None:
    data = selector("AccessControlUnauthorizedAccount(address,bytes32)") + encode(
        ["address", "bytes32"], [ACCOUNT, OPERATOR_ROLE]
    )
    for abi in (ABI, []):
        revert = decode_revert(data, abi)
        assert revert.name == "AccessControlUnauthorizedAccount"
        assert revert.args_ == (ACCOUNT, OPERATOR_ROLE)


def test_decodes_builtin_errors() -> None:
    reason = selector("Error(string)") + encode(["string"], ["nope"])
    panic = selector("Panic(uint256)") + encode(["uint256"], [0x11])
    assert (decode_revert(reason, ABI).name, decode_revert(reason, ABI).args_) == (
        "Error",
        ("nope",),
    )
    assert decode_revert(panic, ABI).args_ == (0x11,)


def test_unknown_selector_and_empty_data_do_not_raise() -> None:
    assert decode_revert(b"\x12\x34\x56\x78", ABI).name == UNKNOWN_ERROR
    assert decode_revert(b"\x12\x34\x56\x78", ABI).args_ == ("0x12345678",)
    assert decode_revert(b"", ABI).name == EMPTY_REVERT
    truncated = selector("JobNotFound(uint256)") + b"\x01"
    assert decode_revert(truncated, ABI).name == "JobNotFound"


def test_every_error_of_the_abi_has_a_name_by_selector() -> None:
    for entry in ABI:
        if entry["type"] != "error":
            continue
        types = ",".join(i["type"] for i in entry["inputs"])
        assert error_name(selector(f"{entry['name']}({types})"), ABI) == entry["name"]
    assert error_name(b"\xde\xad\xbe\xef", ABI) == "0xdeadbeef"


def test_revert_data_is_found_in_web3_exceptions() -> None:
    data = selector("ZeroAddress()")
    assert revert_data(ContractCustomError("0x" + data.hex(), data="0x" + data.hex())) == data
    rpc = Web3RPCError(
        "execution reverted",
        rpc_response={
            "jsonrpc": "2.0",
            "id": 1,
            "error": {"code": 3, "message": "x", "data": "0x" + data.hex()},
        },
    )
    assert revert_data(rpc) == data
    assert revert_data(ValueError("no data")) is None
