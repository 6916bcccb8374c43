"""On-chain writes: one durable transaction manager per operator key.

``TxManager`` batches the outbox (``update_outbox``) into ``applyUpdates`` transactions, stores
each signed transaction before it is broadcast, and drives it to ``confirmed`` or
``fatal_error`` (see ``bridge.tx.manager`` for its guarantees); ``bridge.tx.policy`` holds its
pure rules (fees, fee bumps, gas limits, classification of send errors).
"""

from bridge.tx.manager import NONCE_TAKEN, REVERTED, TickReport, TxManager
from bridge.tx.policy import Fees, SendOutcome, bumped_fees, classify_send_error, initial_fees

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
