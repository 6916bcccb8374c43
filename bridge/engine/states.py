"""The bridge's states of a job (pure; shared by the machine and the store)."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """The bridge's view of a job (see ``bridge.engine.machine`` for the transitions)."""

    NEW = "new"  # confirmed on-chain, no remote job yet
    DISPATCHED = "dispatched"  # remote job created; accept queued
    RUNNING = "running"  # remote job running; markRunning queued
    FINISHING = "finishing"  # remote job completed; outputs to fetch and hash
    CANCELLING = "cancelling"  # requester asked to cancel; remote cancel pending
    SETTLING = "settling"  # terminal update queued, waiting for it to land
    SETTLED = "settled"  # terminal on-chain (by us or by someone else)
    ORPHANED = "orphaned"  # its submission was reorged out after dispatch

    @property
    def is_open(self) -> bool:
        """The bridge still has work to do for this job."""
        return self not in (JobState.SETTLED, JobState.ORPHANED)
