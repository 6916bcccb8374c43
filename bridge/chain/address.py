"""Ethereum addresses as operators type them: checked, then written in EIP-55 form.

Pure and light (eth-utils only), so the CLI can check an address flag without loading web3.
"""

from __future__ import annotations

import re
from typing import Final

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}")


def checksum_address(value: str) -> ChecksumAddress:
    """``value`` in EIP-55 form, if it is an address: all lowercase, all uppercase, or mixed case
    with a valid EIP-55 checksum (a wrong one is most likely a typo, so it is refused).

    Raises:
        ValueError: not ``0x`` and 40 hex digits, or a mixed-case address whose checksum fails.
    """
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise ValueError("not an Ethereum address (0x followed by 40 hex digits)")
    checksummed = to_checksum_address(value)
    digits = value[2:]
    if digits not in (digits.lower(), digits.upper()) and value != checksummed:
        raise ValueError(
            f"{value} fails its EIP-55 checksum (a typo?): check it, or write it in lowercase"
        )
    return checksummed
