"""What a write costs on this chain: fees from ``eth_feeHistory``, legacy ``gasPrice`` chains, and
the L1 data fee of OP-stack chains.

``FeeOracle`` reads the node; the rules are pure and live in ``bridge.tx.policy``. What it
guarantees:

- **EIP-1559 chains**: the tip is the ``fee_percentile`` of recent blocks' priority fees
  (``eth_feeHistory`` over ``history_blocks``; the median over those blocks, empty blocks left
  out), at most ``max_tip_wei``; without history, the node's ``eth_maxPriorityFeePerGas``, then
  1 gwei. The max fee is ``2 * next base fee + tip``, at most ``max_fee_wei``.
- **Legacy chains** are detected once, from the latest block: no ``baseFeePerGas``. Their fee is
  the node's ``eth_gasPrice`` (at most ``max_fee_wei``) and the manager signs type-0
  transactions (``legacy`` is True).
- **OP-stack chains** are detected once, from code at the ``GasPriceOracle`` predeploy
  (``0x420000000000000000000000000000000000000F``). ``l1_fee(raw_tx)`` is its
  ``getL1Fee(bytes)`` for the transaction's bytes (0 on any other chain, or when the oracle does
  not answer: the write is not held up by an estimate).
"""

from __future__ import annotations

import logging
from dataclasses import KW_ONLY, dataclass
from functools import cached_property
from typing import Final

from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import Web3Exception
from web3.types import RPCEndpoint

from bridge.chain.rpc import read
from bridge.tx.policy import (
    DEFAULT_PRIORITY_FEE,
    Fees,
    initial_fees,
    legacy_fees,
    tip_from_history,
)

log = logging.getLogger("bridge.tx")

#: The OP-stack ``GasPriceOracle`` predeploy (the same address on every OP-stack chain).
GAS_PRICE_ORACLE: Final = "0x420000000000000000000000000000000000000F"
_GET_L1_FEE: Final = keccak(text="getL1Fee(bytes)")[:4]


@dataclass(eq=False, repr=False)
class FeeOracle:
    """Market fees and L1 data fees for the operator's writes (see the module docstring)."""

    w3: Web3
    """The node."""
    _: KW_ONLY
    max_fee_wei: int
    """Ceiling of ``maxFeePerGas`` (or ``gasPrice``)."""
    max_tip_wei: int = 50 * 10**9
    """Ceiling of ``maxPriorityFeePerGas``."""
    percentile: float = 50.0
    """Percentile of recent priority fees the tip is set to (0..100)."""
    history_blocks: int = 10
    """Blocks of ``eth_feeHistory`` to read."""

    @cached_property
    def legacy(self) -> bool:
        """Whether the chain has no base fee (blocks without ``baseFeePerGas``): type-0 txs."""
        legacy = self._latest_base_fee() is None
        if legacy:
            log.info("the chain has no base fee (pre-London): legacy gasPrice transactions")
        return legacy

    @cached_property
    def op_stack(self) -> bool:
        """Whether the chain has the OP-stack ``GasPriceOracle`` (so writes pay an L1 fee)."""
        op_stack = len(self.w3.eth.get_code(Web3.to_checksum_address(GAS_PRICE_ORACLE))) > 0
        if op_stack:
            log.info("OP-stack chain: writes are charged an L1 data fee (GasPriceOracle)")
        return op_stack

    def market(self) -> Fees:
        """Today's fees for a new transaction (legacy: ``gasPrice`` in both fields)."""
        if self.legacy:
            return legacy_fees(int(self.w3.eth.gas_price), self.max_fee_wei)
        base_fee, tip = self._history()
        if tip is None:
            try:
                tip = min(int(self.w3.eth.max_priority_fee), self.max_tip_wei)
            except (Web3Exception, ValueError):
                tip = min(DEFAULT_PRIORITY_FEE, self.max_tip_wei)
        if base_fee is None:
            base_fee = self._latest_base_fee() or 0
        return initial_fees(base_fee, tip, self.max_fee_wei)

    def _latest_base_fee(self) -> int | None:
        """The latest block's ``baseFeePerGas`` (None: a legacy chain), read raw: web3's
        formatting of a block with hundreds of transactions costs milliseconds a call."""
        fee = read(self.w3, "eth_getBlockByNumber", ["latest", False]).get("baseFeePerGas")
        return None if fee is None else int(str(fee), 16)

    def _history(self) -> tuple[int | None, int | None]:
        """(next block's base fee, tip from the percentile) from ``eth_feeHistory``; Nones when
        the node does not serve it."""
        try:
            reply = self.w3.provider.make_request(
                RPCEndpoint("eth_feeHistory"),
                [hex(self.history_blocks), "latest", [self.percentile]],
            )
        except (Web3Exception, OSError, ValueError):
            return None, None
        result = reply.get("result")
        if not isinstance(result, dict):
            return None, None
        try:
            base_fees = [int(str(b), 16) for b in result.get("baseFeePerGas") or []]
            rewards = [[int(str(r), 16) for r in row] for row in result.get("reward") or []]
            ratios = [float(r) for r in result.get("gasUsedRatio") or []]
        except (TypeError, ValueError):
            return None, None
        next_base = base_fees[-1] if base_fees else None
        return next_base, tip_from_history(rewards, ratios, self.max_tip_wei)

    def l1_fee(self, raw_tx: str | bytes) -> int:
        """The L1 data fee of a signed transaction on an OP-stack chain, in wei; 0 elsewhere or
        when the oracle does not answer."""
        if not self.op_stack:
            return 0
        data = _GET_L1_FEE + encode(["bytes"], [bytes(HexBytes(raw_tx))])
        try:
            answer = self.w3.eth.call(
                {"to": Web3.to_checksum_address(GAS_PRICE_ORACLE), "data": HexBytes(data)}
            )
            (fee,) = decode(["uint256"], bytes(answer))
        except (Web3Exception, OSError, ValueError) as exc:
            kind = type(exc).__name__
            log.warning("GasPriceOracle.getL1Fee failed (%s): L1 fee counted as 0", kind)
            return 0
        return int(fee)
