"""The job state machine: pure transition functions, no I/O.

``transition(job, event)`` takes the bridge's view of one job and something that happened to it,
and returns either a ``Decision`` (the next state, the on-chain updates to queue, the remote
actions to take, and why) or a ``Rejection`` (the event does not apply to this job, and why).
Nothing here imports web3, SQL, HTTP or logging; ``bridge.engine.service`` does the I/O.

States (``JobState``)::

    NEW --RemoteCreated--> DISPATCHED --Running--> RUNNING --Completed--> FINISHING
     |                        |  \\                  |                      |
     |  RemoteRejected /      |   CancelRequested    |                      | OutputsHashed
     |  CreateGaveUp /        v          |           v                      v
     |  SpecInvalid        (Failed/Aborted)-----> SETTLING <------------- (Completed queued)
     '----------------------------------------------> |  terminal update lands / settled by others
                                                    SETTLED
    Any open state, and SETTLED --SubmissionReorged--> ORPHANED
    Any open state but SETTLING --DeadlineNear / AdminFail--> SETTLING (Failed queued, refund)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from bridge.chain.spec import Status
from bridge.engine.states import JobState
from bridge.remote.convention import CEStatus, is_terminal

_REMOTE_VALUES = frozenset(s.value for s in CEStatus)
_REMOTE_ORDER = {
    CEStatus.PROVISIONING: 0,
    CEStatus.DOWNLOADING: 1,
    CEStatus.RUNNING: 2,
}


class RemoteAction(StrEnum):
    """I/O the service must do after applying a decision."""

    CANCEL_REMOTE = "cancel_remote"
    DOWNLOAD_OUTPUTS = "download_outputs"


@dataclass(frozen=True)
class JobView:
    """What the machine needs to know about a job."""

    state: JobState
    remote_job_id: str | None = None
    remote_status: str | None = None
    cancel_requested: bool = False


@dataclass(frozen=True)
class QueuedUpdate:
    """An on-chain write to queue (an ``applyUpdates`` item)."""

    status: Status
    data: str = ""
    result_hash: bytes = b"\x00" * 32


@dataclass(frozen=True)
class Decision:
    """The outcome of a valid event."""

    state: JobState
    reason: str
    updates: tuple[QueuedUpdate, ...] = ()
    actions: tuple[RemoteAction, ...] = ()
    remote_job_id: str | None = None
    remote_status: str | None = None
    cancel_requested: bool | None = None
    outcome: Status | None = None  # terminal status queued or observed


@dataclass(frozen=True)
class Rejection:
    """An event that does not apply to the job in its state; nothing changes."""

    reason: str


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True)
class RemoteCreated:
    """CE created the remote job."""

    remote_job_id: str


@dataclass(frozen=True)
class Failure:
    """Something that fails the job if it is in the one state where it can happen (``_FAILURES``
    says which, and how the reason starts); ``message`` says what went wrong."""

    message: str


class CreateRejected(Failure):
    """CE refused job-create with a 4xx: the job can never run."""


class CreateGaveUp(Failure):
    """job-create kept failing transiently past the retry budget."""


class SpecInvalid(Failure):
    """The bridge cannot turn the on-chain spec into a CE job."""


@dataclass(frozen=True)
class RemoteStatusSeen:
    """A job-status answer."""

    status: CEStatus
    error: str | None = None


@dataclass(frozen=True)
class OutputsHashed:
    """The outputs were downloaded, stored and hashed."""

    result_hash: bytes
    result_uri: str


class OutputsUnavailable(Failure):
    """The outputs of a completed remote job cannot be fetched (refused, too large, gone)."""


@dataclass(frozen=True)
class CancelRequestedSeen:
    """The requester called ``cancelJob`` on an accepted job (``CancelRequested`` event)."""


@dataclass(frozen=True)
class SettledOnChain:
    """The job is terminal on-chain: our terminal update landed, or someone else settled it."""

    status: Status


@dataclass(frozen=True)
class DeadlineNear:
    """The on-chain deadline is close and the job is not finished: fail it while we still can."""


@dataclass(frozen=True)
class AdminFail:
    """The operator fails the job on purpose (``POST /admin/jobs/{id}/fail``): refund it."""

    reason: str


@dataclass(frozen=True)
class SubmissionReorged:
    """The ``JobSubmitted`` event vanished in a reorg deeper than the confirmations."""


@dataclass(frozen=True)
class TerminalUpdateSkipped:
    """Our terminal update was skipped on-chain (``UpdateSkipped``) with this error name."""

    error: str


Event = (
    RemoteCreated
    | CreateRejected
    | CreateGaveUp
    | SpecInvalid
    | RemoteStatusSeen
    | OutputsHashed
    | OutputsUnavailable
    | CancelRequestedSeen
    | SettledOnChain
    | DeadlineNear
    | AdminFail
    | SubmissionReorged
    | TerminalUpdateSkipped
)
Outcome = Decision | Rejection

#: Each failure: the state it can happen in, and how the job's failure reason starts.
_FAILURES: dict[type[Failure], tuple[JobState, str]] = {
    CreateRejected: (JobState.NEW, "CE rejected the job"),
    CreateGaveUp: (JobState.NEW, "CE unavailable, job not created"),
    SpecInvalid: (JobState.NEW, "invalid job spec"),
    OutputsUnavailable: (JobState.FINISHING, "outputs unavailable"),
}

_WORKING = (JobState.DISPATCHED, JobState.RUNNING)
_REMOTE_LIVE = (JobState.DISPATCHED, JobState.RUNNING, JobState.CANCELLING, JobState.FINISHING)


def _fail(reason: str, *, cancel_remote: bool = False) -> Decision:
    return Decision(
        state=JobState.SETTLING,
        reason=reason,
        updates=(QueuedUpdate(Status.FAILED, data=reason),),
        actions=(RemoteAction.CANCEL_REMOTE,) if cancel_remote else (),
        outcome=Status.FAILED,
    )


def _not_in(job: JobView, event: Event) -> Rejection:
    return Rejection(f"{type(event).__name__} does not apply to a job in state {job.state}")


def transition(job: JobView, event: Event) -> Outcome:
    """The next step of ``job`` after ``event``; pure and total (every pair has an answer)."""
    if not job.state.is_open:
        if isinstance(event, SubmissionReorged) and job.state is JobState.SETTLED:
            # Settled on a chain that a deep reorg replaced: the job no longer exists there.
            return Decision(
                state=JobState.ORPHANED,
                reason="submission of a settled job removed by a chain reorganisation",
            )
        return Rejection(f"job is {job.state}: nothing follows")
    match event:
        case RemoteCreated(remote_job_id=remote_id):
            if job.state is not JobState.NEW:
                return _not_in(job, event)
            if not remote_id:
                return Rejection("CE returned an empty remote job id")
            return Decision(
                state=JobState.DISPATCHED,
                reason=f"remote job {remote_id} created",
                updates=(QueuedUpdate(Status.ACCEPTED, data=remote_id),),
                remote_job_id=remote_id,
            )
        case Failure(message=message):
            state, reason = _FAILURES[type(event)]
            if job.state is not state:
                return _not_in(job, event)
            return _fail(f"{reason}: {message}")
        case RemoteStatusSeen():
            return _remote_status(job, event)
        case OutputsHashed(result_hash=result_hash, result_uri=uri):
            if job.state is not JobState.FINISHING:
                return _not_in(job, event)
            if len(result_hash) != 32 or result_hash == b"\x00" * 32:
                return Rejection("a result hash must be 32 non-zero bytes")
            return Decision(
                state=JobState.SETTLING,
                reason="outputs hashed",
                updates=(QueuedUpdate(Status.COMPLETED, data=uri, result_hash=result_hash),),
                outcome=Status.COMPLETED,
            )
        case CancelRequestedSeen():
            if job.cancel_requested:
                return Rejection("cancellation was already requested")
            if job.state in _WORKING:
                return Decision(
                    state=JobState.CANCELLING,
                    reason="requester asked to cancel",
                    actions=(RemoteAction.CANCEL_REMOTE,),
                    cancel_requested=True,
                )
            # NEW: the accept is not on-chain yet, so this cannot be; FINISHING/SETTLING: the
            # job ends as it is ending (docs/PROTOCOL.md: a finished remote job ends Completed).
            return Decision(state=job.state, reason="cancel noted", cancel_requested=True)
        case SettledOnChain(status=status):
            if not status.is_terminal:
                return Rejection(f"{status.name} is not a terminal status")
            live = job.state in _REMOTE_LIVE and job.remote_job_id is not None
            return Decision(
                state=JobState.SETTLED,
                reason=f"{status.name.lower()} on-chain",
                actions=(RemoteAction.CANCEL_REMOTE,)
                if live and job.state != JobState.FINISHING
                else (),
                outcome=status,
            )
        case DeadlineNear():
            if job.state in (JobState.SETTLING,):
                return Rejection("a terminal update is already queued")
            return _fail(
                "deadline reached before the remote job finished",
                cancel_remote=job.remote_job_id is not None,
            )
        case AdminFail(reason=reason):
            if job.state is JobState.SETTLING:
                return Rejection("a terminal update is already queued")
            if not reason.strip():
                return Rejection("an operator failure needs a reason")
            return _fail(
                f"failed by the operator: {reason.strip()}",
                cancel_remote=job.remote_job_id is not None,
            )
        case SubmissionReorged():
            return Decision(
                state=JobState.ORPHANED,
                reason="submission removed by a chain reorganisation",
                actions=(RemoteAction.CANCEL_REMOTE,)
                if job.remote_job_id and job.state in _REMOTE_LIVE
                else (),
            )
        case TerminalUpdateSkipped(error=error):
            if job.state is not JobState.SETTLING:
                return _not_in(job, event)
            return Decision(state=JobState.SETTLED, reason=f"terminal update skipped: {error}")
    return Rejection(f"unknown event {event!r}")


def _remote_status(job: JobView, event: RemoteStatusSeen) -> Outcome:
    status = event.status
    state = job.state
    if state not in (*_WORKING, JobState.CANCELLING):
        return _not_in(job, event)
    if status is CEStatus.COMPLETED:
        return Decision(
            state=JobState.FINISHING,
            reason="remote job completed",
            actions=(RemoteAction.DOWNLOAD_OUTPUTS,),
            remote_status=status,
        )
    if status is CEStatus.FAILED:
        failed = _fail(f"remote job failed: {event.error or 'no reason given'}")
        return replace(failed, remote_status=status)
    if status is CEStatus.ABORTED:
        if state is JobState.CANCELLING:
            return Decision(
                state=JobState.SETTLING,
                reason="cancelled at the requester's request",
                updates=(QueuedUpdate(Status.CANCELLED, data="cancelled by requester"),),
                remote_status=status,
                outcome=Status.CANCELLED,
            )
        aborted = _fail(f"remote job aborted: {event.error or 'no reason given'}")
        return replace(aborted, remote_status=status)
    previous = CEStatus(job.remote_status) if job.remote_status in _REMOTE_VALUES else None
    if previous in _REMOTE_ORDER and _REMOTE_ORDER[status] < _REMOTE_ORDER[previous]:
        return Rejection(f"remote status went back from {previous} to {status}")
    if status is CEStatus.RUNNING and state is JobState.DISPATCHED:
        return Decision(
            state=JobState.RUNNING,
            reason="remote job running",
            updates=(QueuedUpdate(Status.RUNNING),),
            remote_status=status,
        )
    return Decision(state=state, reason=f"remote job {status.lower()}", remote_status=status)


# ---------------------------------------------------------------------------- the next step


class Step(StrEnum):
    """The I/O the worker does next for a due job (``next_step``)."""

    FAIL_DEADLINE = "fail_deadline"  # apply ``DeadlineNear``: fail it while a refund is possible
    DISPATCH = "dispatch"  # send job-create
    FINISH = "finish"  # download and hash the outputs
    POLL = "poll"  # ask CE for the remote job's status (and cancel it when cancelling)
    SPEC_INVALID = "spec_invalid"  # apply ``SpecInvalid``: the spec can never run
    WAIT = "wait"  # nothing now: poll again later


@dataclass(frozen=True)
class NextStep:
    """What to do next with one job, and why."""

    step: Step
    reason: str


#: States whose remote work a near deadline cuts short (downloads that keep failing too).
_DEADLINE_STATES = (
    JobState.NEW,
    JobState.DISPATCHED,
    JobState.RUNNING,
    JobState.CANCELLING,
    JobState.FINISHING,
)


def next_step(job: JobView, *, chain_now: int, deadline: int, deadline_margin: int) -> NextStep:
    """The worker's next step for a due open job at chain time ``chain_now`` (pure).

    A job whose on-chain ``deadline`` is within ``deadline_margin`` is failed first, whatever
    it was doing; otherwise a new job is dispatched, a finishing one downloads its outputs, and
    any other is polled.
    """
    if chain_now >= deadline - deadline_margin and job.state in _DEADLINE_STATES:
        return NextStep(Step.FAIL_DEADLINE, "the on-chain deadline is within the margin")
    if job.state is JobState.NEW:
        return NextStep(Step.DISPATCH, "new job")
    if job.state is JobState.FINISHING:
        return NextStep(Step.FINISH, "remote job completed")
    return NextStep(Step.POLL, f"remote job followed in state {job.state}")


def dispatch_step(*, spec_error: str | None, rechecking: bool, settled_at_head: bool) -> NextStep:
    """Whether a new job may be sent to CE now (pure).

    Args:
        spec_error: why its spec cannot run, if known: it is failed instead.
        rechecking: a reorg went under its submission; it waits until it is seen again.
        settled_at_head: cancelled or expired in a block not yet confirmed; creating a remote
            job would waste compute, and the confirmed event settles it (if a reorg removes
            that block, it is dispatched then).
    """
    if spec_error:
        return NextStep(Step.SPEC_INVALID, spec_error)
    if rechecking:
        return NextStep(Step.WAIT, "its submission is re-checked after a reorg")
    if settled_at_head:
        return NextStep(Step.WAIT, "settled on-chain above the scan cursor")
    return NextStep(Step.DISPATCH, "new job")


def cancel_while_polling(state: JobState, remote_status: str) -> bool:
    """Whether a poll must also ask CE to cancel: the requester cancelled and the remote job
    has not ended yet (pure)."""
    return state is JobState.CANCELLING and not is_terminal(remote_status)


def create_exhausted(state: JobState, attempts: int, budget: int, *, counted: bool) -> bool:
    """Whether a new job's job-create failed transiently often enough to give up (pure): only
    counted failures (CE's, not the node's) use up ``budget``."""
    return counted and state is JobState.NEW and attempts >= budget
