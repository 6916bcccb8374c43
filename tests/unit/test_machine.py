"""The job state machine: every state against every event, valid and invalid."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bridge.chain.spec import Status
from bridge.engine import machine as m
from bridge.engine.states import JobState
from bridge.remote.convention import CEStatus

HASH = b"\x11" * 32

EVENTS: dict[str, m.Event] = {
    "created": m.RemoteCreated("ce-1"),
    "rejected": m.CreateRejected("bad app"),
    "gave_up": m.CreateGaveUp("503 five times"),
    "spec_invalid": m.SpecInvalid("bad filename"),
    "provisioning": m.RemoteStatusSeen(CEStatus.PROVISIONING),
    "downloading": m.RemoteStatusSeen(CEStatus.DOWNLOADING),
    "running": m.RemoteStatusSeen(CEStatus.RUNNING),
    "completed": m.RemoteStatusSeen(CEStatus.COMPLETED),
    "failed": m.RemoteStatusSeen(CEStatus.FAILED, "segfault"),
    "aborted": m.RemoteStatusSeen(CEStatus.ABORTED),
    "hashed": m.OutputsHashed(HASH, "http://bridge/jobs/1/outputs/"),
    "unavailable": m.OutputsUnavailable("too large"),
    "cancel": m.CancelRequestedSeen(),
    "settled_completed": m.SettledOnChain(Status.COMPLETED),
    "settled_expired": m.SettledOnChain(Status.EXPIRED),
    "deadline": m.DeadlineNear(),
    "admin_fail": m.AdminFail("operator says no"),
    "reorged": m.SubmissionReorged(),
    "skipped": m.TerminalUpdateSkipped("DeadlinePassed"),
}

# (state, event) -> (next state, statuses queued on-chain, remote actions). Every pair not listed
# here must be a Rejection.
VALID: dict[tuple[JobState, str], tuple[JobState, tuple[Status, ...], tuple[m.RemoteAction, ...]]]
VALID = {
    (JobState.NEW, "created"): (JobState.DISPATCHED, (Status.ACCEPTED,), ()),
    (JobState.NEW, "rejected"): (JobState.SETTLING, (Status.FAILED,), ()),
    (JobState.NEW, "gave_up"): (JobState.SETTLING, (Status.FAILED,), ()),
    (JobState.NEW, "spec_invalid"): (JobState.SETTLING, (Status.FAILED,), ()),
    (JobState.NEW, "cancel"): (JobState.NEW, (), ()),
    (JobState.NEW, "settled_completed"): (JobState.SETTLED, (), ()),
    (JobState.NEW, "settled_expired"): (JobState.SETTLED, (), ()),
    (JobState.NEW, "deadline"): (JobState.SETTLING, (Status.FAILED,), ()),
    (JobState.NEW, "reorged"): (JobState.ORPHANED, (), ()),
}
for _state in (JobState.DISPATCHED, JobState.RUNNING):
    _cancel = (m.RemoteAction.CANCEL_REMOTE,)
    VALID |= {
        (_state, "provisioning"): (_state, (), ()),
        (_state, "downloading"): (_state, (), ()),
        (_state, "completed"): (JobState.FINISHING, (), (m.RemoteAction.DOWNLOAD_OUTPUTS,)),
        (_state, "failed"): (JobState.SETTLING, (Status.FAILED,), ()),
        (_state, "aborted"): (JobState.SETTLING, (Status.FAILED,), ()),
        (_state, "cancel"): (JobState.CANCELLING, (), _cancel),
        (_state, "settled_completed"): (JobState.SETTLED, (), _cancel),
        (_state, "settled_expired"): (JobState.SETTLED, (), _cancel),
        (_state, "deadline"): (JobState.SETTLING, (Status.FAILED,), _cancel),
        (_state, "reorged"): (JobState.ORPHANED, (), _cancel),
    }
VALID[(JobState.DISPATCHED, "running")] = (JobState.RUNNING, (Status.RUNNING,), ())
VALID[(JobState.RUNNING, "running")] = (JobState.RUNNING, (), ())
VALID |= {
    (JobState.CANCELLING, "provisioning"): (JobState.CANCELLING, (), ()),
    (JobState.CANCELLING, "downloading"): (JobState.CANCELLING, (), ()),
    (JobState.CANCELLING, "running"): (JobState.CANCELLING, (), ()),
    (JobState.CANCELLING, "completed"): (
        JobState.FINISHING,
        (),
        (m.RemoteAction.DOWNLOAD_OUTPUTS,),
    ),
    (JobState.CANCELLING, "failed"): (JobState.SETTLING, (Status.FAILED,), ()),
    (JobState.CANCELLING, "aborted"): (JobState.SETTLING, (Status.CANCELLED,), ()),
    (JobState.CANCELLING, "settled_completed"): (
        JobState.SETTLED,
        (),
        (m.RemoteAction.CANCEL_REMOTE,),
    ),
    (JobState.CANCELLING, "settled_expired"): (
        JobState.SETTLED,
        (),
        (m.RemoteAction.CANCEL_REMOTE,),
    ),
    (JobState.CANCELLING, "deadline"): (
        JobState.SETTLING,
        (Status.FAILED,),
        (m.RemoteAction.CANCEL_REMOTE,),
    ),
    (JobState.CANCELLING, "reorged"): (
        JobState.ORPHANED,
        (),
        (m.RemoteAction.CANCEL_REMOTE,),
    ),
    (JobState.FINISHING, "hashed"): (JobState.SETTLING, (Status.COMPLETED,), ()),
    (JobState.FINISHING, "unavailable"): (JobState.SETTLING, (Status.FAILED,), ()),
    (JobState.FINISHING, "cancel"): (JobState.FINISHING, (), ()),
    (JobState.FINISHING, "settled_completed"): (JobState.SETTLED, (), ()),
    (JobState.FINISHING, "settled_expired"): (JobState.SETTLED, (), ()),
    (JobState.FINISHING, "deadline"): (
        JobState.SETTLING,
        (Status.FAILED,),
        (m.RemoteAction.CANCEL_REMOTE,),
    ),
    (JobState.FINISHING, "reorged"): (
        JobState.ORPHANED,
        (),
        (m.RemoteAction.CANCEL_REMOTE,),
    ),
    (JobState.SETTLING, "cancel"): (JobState.SETTLING, (), ()),
    (JobState.SETTLING, "settled_completed"): (JobState.SETTLED, (), ()),
    (JobState.SETTLING, "settled_expired"): (JobState.SETTLED, (), ()),
    (JobState.SETTLING, "reorged"): (JobState.ORPHANED, (), ()),
    (JobState.SETTLING, "skipped"): (JobState.SETTLED, (), ()),
    # Settled on a chain a deep reorg replaced: the job is gone, nothing to cancel.
    (JobState.SETTLED, "reorged"): (JobState.ORPHANED, (), ()),
}
# The operator fails an open job exactly as a near deadline does: Failed queued (refund), the
# remote job cancelled once there is one; not once a terminal update is queued.
VALID |= {
    (JobState.NEW, "admin_fail"): (JobState.SETTLING, (Status.FAILED,), ()),
    (JobState.DISPATCHED, "admin_fail"): (
        JobState.SETTLING,
        (Status.FAILED,),
        (m.RemoteAction.CANCEL_REMOTE,),
    ),
    (JobState.RUNNING, "admin_fail"): (
        JobState.SETTLING,
        (Status.FAILED,),
        (m.RemoteAction.CANCEL_REMOTE,),
    ),
    (JobState.CANCELLING, "admin_fail"): (
        JobState.SETTLING,
        (Status.FAILED,),
        (m.RemoteAction.CANCEL_REMOTE,),
    ),
    (JobState.FINISHING, "admin_fail"): (
        JobState.SETTLING,
        (Status.FAILED,),
        (m.RemoteAction.CANCEL_REMOTE,),
    ),
}


def view(state: JobState) -> m.JobView:
    """A job in ``state`` with a remote job from DISPATCHED on."""
    remote = None if state is JobState.NEW else "ce-1"
    return m.JobView(
        state=state, remote_job_id=remote, cancel_requested=state is JobState.CANCELLING
    )


@pytest.mark.parametrize("state", list(JobState))
@pytest.mark.parametrize("name", list(EVENTS))
def test_every_state_and_event(state: JobState, name: str) -> None:
    outcome = m.transition(view(state), EVENTS[name])
    expected = VALID.get((state, name))
    if expected is None:
        assert isinstance(outcome, m.Rejection), f"{state} + {name} should be rejected"
        assert outcome.reason
        return
    assert isinstance(outcome, m.Decision), f"{state} + {name}: {outcome}"
    next_state, statuses, actions = expected
    assert outcome.state is next_state
    assert tuple(u.status for u in outcome.updates) == statuses
    assert outcome.actions == actions
    assert outcome.reason


def test_accept_carries_the_remote_job_id() -> None:
    outcome = m.transition(view(JobState.NEW), m.RemoteCreated("ce-42"))
    assert isinstance(outcome, m.Decision)
    assert outcome.remote_job_id == "ce-42"
    assert outcome.updates == (m.QueuedUpdate(Status.ACCEPTED, data="ce-42"),)


def test_completion_carries_hash_and_uri() -> None:
    outcome = m.transition(view(JobState.FINISHING), EVENTS["hashed"])
    assert isinstance(outcome, m.Decision)
    (update,) = outcome.updates
    assert update.result_hash == HASH
    assert update.data == "http://bridge/jobs/1/outputs/"
    assert outcome.outcome is Status.COMPLETED


def test_failure_reason_names_the_cause() -> None:
    outcome = m.transition(view(JobState.NEW), m.CreateRejected("unknown app"))
    assert isinstance(outcome, m.Decision)
    assert outcome.updates[0].data == "CE rejected the job: unknown app"
    failed = m.transition(view(JobState.RUNNING), m.RemoteStatusSeen(CEStatus.FAILED, "oom"))
    assert isinstance(failed, m.Decision)
    assert failed.updates[0].data == "remote job failed: oom"


def test_operator_failure_carries_the_reason() -> None:
    outcome = m.transition(view(JobState.RUNNING), m.AdminFail("  stuck for a week "))
    assert isinstance(outcome, m.Decision)
    assert outcome.updates == (
        m.QueuedUpdate(Status.FAILED, data="failed by the operator: stuck for a week"),
    )
    assert outcome.outcome is Status.FAILED


@pytest.mark.parametrize(
    "event",
    [
        m.AdminFail(" "),
        m.RemoteCreated(""),
        m.OutputsHashed(b"\x00" * 32, "u"),
        m.OutputsHashed(b"\x01", "u"),
    ],
)
def test_malformed_values_are_rejected(event: m.Event) -> None:
    state = JobState.NEW if isinstance(event, m.RemoteCreated | m.AdminFail) else JobState.FINISHING
    assert isinstance(m.transition(view(state), event), m.Rejection)


def test_remote_status_going_back_is_rejected() -> None:
    job = m.JobView(JobState.RUNNING, remote_job_id="ce-1", remote_status=CEStatus.RUNNING)
    outcome = m.transition(job, m.RemoteStatusSeen(CEStatus.PROVISIONING))
    assert isinstance(outcome, m.Rejection)
    assert "went back" in outcome.reason


def test_second_cancel_request_is_rejected() -> None:
    job = m.JobView(JobState.CANCELLING, remote_job_id="ce-1", cancel_requested=True)
    assert isinstance(m.transition(job, m.CancelRequestedSeen()), m.Rejection)


def test_non_terminal_settlement_is_rejected() -> None:
    outcome = m.transition(view(JobState.RUNNING), m.SettledOnChain(Status.RUNNING))
    assert isinstance(outcome, m.Rejection)


PURE_MODULES = (
    "bridge/engine/machine.py",
    "bridge/engine/states.py",
    "bridge/chain/spec.py",
    "bridge/remote/convention.py",
    "bridge/results.py",
)
IO_PACKAGES = {"web3", "sqlalchemy", "sqlmodel", "httpx", "logging", "fastapi", "socket"}


@pytest.mark.parametrize("path", PURE_MODULES)
def test_functional_core_imports_no_io(path: str) -> None:
    tree = ast.parse((Path(__file__).resolve().parents[2] / path).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & IO_PACKAGES, f"{path} imports {imported & IO_PACKAGES}"
