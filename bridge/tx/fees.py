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
import threading
from typing import Final

from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import Web3Exception
from web3.types import RPCEndpoint

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


class FeeOracle:
    """Market fees and L1 data fees for the operator's writes (see the module docstring).

    Args:
        w3: the node.
        max_fee_wei: ceiling of ``maxFeePerGas`` (or ``gasPrice``).
        max_tip_wei: ceiling of ``maxPriorityFeePerGas``.
        percentile: percentile of recent priority fees the tip is set to (0..100).
        history_blocks: blocks of ``eth_feeHistory`` to read.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        max_fee_wei: int,
        max_tip_wei: int = 50 * 10**9,
        percentile: float = 50.0,
        history_blocks: int = 10,
    ) -> None:
        self._w3 = w3
        self.max_fee_wei = max_fee_wei
        self._max_tip = max_tip_wei
        self._percentile = percentile
        self._blocks = history_blocks
        self._lock = threading.Lock()
        self._legacy: bool | None = None
        self._op_stack: bool | None = None

    @property
    def legacy(self) -> bool:
        """Whether the chain has no base fee (blocks without ``baseFeePerGas``): type-0 txs."""
        if self._legacy is None:
            block = self._w3.eth.get_block("latest")
            legacy = block.get("baseFeePerGas") is None
            with self._lock:
                self._legacy = legacy
            if legacy:
                log.info("the chain has no base fee (pre-London): legacy gasPrice transactions")
        return bool(self._legacy)

    @property
    def op_stack(self) -> bool:
        """Whether the chain has the OP-stack ``GasPriceOracle`` (so writes pay an L1 fee)."""
        if self._op_stack is None:
            code = self._w3.eth.get_code(Web3.to_checksum_address(GAS_PRICE_ORACLE))
            with self._lock:
                self._op_stack = len(code) > 0
            if self._op_stack:
                log.info("OP-stack chain: writes are charged an L1 data fee (GasPriceOracle)")
        return bool(self._op_stack)

    def market(self) -> Fees:
        """Today's fees for a new transaction (legacy: ``gasPrice`` in both fields)."""
        if self.legacy:
            return legacy_fees(int(self._w3.eth.gas_price), self.max_fee_wei)
        base_fee, tip = self._history()
        if tip is None:
            try:
                tip = min(int(self._w3.eth.max_priority_fee), self._max_tip)
            except (Web3Exception, ValueError):
                tip = min(DEFAULT_PRIORITY_FEE, self._max_tip)
        if base_fee is None:
            block = self._w3.eth.get_block("latest")
            base_fee = int(block.get("baseFeePerGas", 0) or 0)
        return initial_fees(base_fee, tip, self.max_fee_wei)

    def _history(self) -> tuple[int | None, int | None]:
        """(next block's base fee, tip from the percentile) from ``eth_feeHistory``; Nones when
        the node does not serve it."""
        try:
            reply = self._w3.provider.make_request(
                RPCEndpoint("eth_feeHistory"), [hex(self._blocks), "latest", [self._percentile]]
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
        return next_base, tip_from_history(rewards, ratios, self._max_tip)

    def l1_fee(self, raw_tx: str | bytes) -> int:
        """The L1 data fee of a signed transaction on an OP-stack chain, in wei; 0 elsewhere or
        when the oracle does not answer."""
        if not self.op_stack:
            return 0
        data = _GET_L1_FEE + encode(["bytes"], [bytes(HexBytes(raw_tx))])
        try:
            answer = self._w3.eth.call(
                {"to": Web3.to_checksum_address(GAS_PRICE_ORACLE), "data": HexBytes(data)}
            )
            (fee,) = decode(["uint256"], bytes(answer))
        except (Web3Exception, OSError, ValueError) as exc:
            kind = type(exc).__name__
            log.warning("GasPriceOracle.getL1Fee failed (%s): L1 fee counted as 0", kind)
            return 0
        return int(fee)
