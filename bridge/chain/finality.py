"""Which block the bridge treats as final: a confirmation count, or the node's ``safe`` /
``finalized`` tag.

``BRIDGE_CONFIRMATIONS`` is either a number N (an event in block b is acted on once the head is
at b + N) or ``safe`` / ``finalized`` (once the node's block of that tag has reached b: on a
proof-of-stake chain ``finalized`` cannot be reorganised without a third of the stake being
slashed, ``safe`` very unlikely; on an OP-stack chain ``safe`` means "derived from data on L1"
and ``finalized`` "from finalized L1 data"). ``Finality.target`` is the pure rule; ``final_block``
asks the node. Above the target nothing is read, so the scanner's reorg checks (block hashes
kept per scanned range) only ever see blocks at or below it, and keep working as with a count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from web3 import Web3
from web3.exceptions import Web3Exception

from bridge.chain import rpc
from bridge.errors import RpcUnavailable

FinalityTag = Literal["safe", "finalized"]


@dataclass(frozen=True)
class Finality:
    """How far behind the head the bridge reads: ``depth`` blocks, or the node's ``tag``."""

    depth: int = 0
    tag: FinalityTag | None = None

    @classmethod
    def of(cls, confirmations: int | str) -> Finality:
        """From ``BRIDGE_CONFIRMATIONS`` (already validated: an int >= 0, ``safe`` or
        ``finalized``)."""
        if isinstance(confirmations, int):
            return cls(depth=confirmations)
        if confirmations not in ("safe", "finalized"):
            raise ValueError(f"not a finality tag: {confirmations!r}")
        return cls(tag=confirmations)  # type: ignore[arg-type]  # checked above

    def target(self, head: int, tagged: int | None = None) -> int:
        """The last block to act on, given the ``head`` and the tag's block (``tagged``, read
        from the node in tag mode; None when the node has none yet: -1, nothing is final).

        Never above the head: a node whose tag is ahead of its own head is not believed.
        """
        if self.tag is None:
            return head - self.depth
        if tagged is None:
            return -1
        return min(head, tagged)

    def describe(self, head: int | None = None, tagged: int | None = None) -> str:
        """One line for ``config check`` and logs: the mode and, when known, the distance from
        the head."""
        if self.tag is None:
            return f"confirmations: {self.depth} blocks behind the head"
        where = f"the node's `{self.tag}` block"
        if head is None or tagged is None:
            return f"confirmations: {where}"
        return f"confirmations: {where} ({tagged}, {head - tagged} blocks behind head {head})"


def tagged_block(w3: Web3, tag: FinalityTag) -> int | None:
    """The number of the node's ``tag`` block, or None when the node has none yet.

    Raises:
        RpcUnavailable: the node failed, or does not know the tag (a pre-merge node).
    """
    try:
        block = rpc.read(w3, "eth_getBlockByNumber", [tag, False])
        number = None if block is None else block.get("number")
        return None if number is None else int(str(number), 16)
    except (Web3Exception, OSError, ValueError, AttributeError) as exc:
        text = str(exc).lower()
        if "not found" in text:
            return None
        what = f"eth_getBlockByNumber({tag}) failed: {exc.__class__.__name__}"
        raise RpcUnavailable(what) from exc


def final_block(w3: Web3, finality: Finality, head: int) -> int:
    """``finality.target`` with the tag read from the node (one request in tag mode, none
    otherwise)."""
    if finality.tag is None:
        return finality.target(head)
    return finality.target(head, tagged_block(w3, finality.tag))
