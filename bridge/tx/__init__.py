"""On-chain writes: one durable transaction manager per operator key.

``TxManager`` batches the outbox (``update_outbox``) into ``applyUpdates`` transactions, stores
each signed transaction before it is broadcast, and drives it to ``confirmed`` or
``fatal_error`` (see ``bridge.tx.manager`` for its guarantees); ``bridge.tx.policy`` holds its
pure rules (fees, fee bumps, gas limits, classification of send errors).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.tx.policy import Fees, SendOutcome, bumped_fees, classify_send_error, initial_fees

if TYPE_CHECKING:
    from bridge.tx.manager import NONCE_TAKEN, REVERTED, TickReport, TxManager

#: Names served from ``bridge.tx.manager`` on first use, so that importing the pure
#: ``bridge.tx.policy`` (or ``bridge.tx.plan``) never loads web3 or SQLAlchemy.
_FROM_MANAGER = frozenset({"NONCE_TAKEN", "REVERTED", "TickReport", "TxManager"})


def __getattr__(name: str) -> Any:
    if name in _FROM_MANAGER:
        from bridge.tx import manager

        return getattr(manager, name)
    raise AttributeError(f"module 'bridge.tx' has no attribute {name!r}")


__all__ = [
    "NONCE_TAKEN",
    "REVERTED",
    "Fees",
    "SendOutcome",
    "TickReport",
    "TxManager",
    "bumped_fees",
    "classify_send_error",
    "initial_fees",
]
