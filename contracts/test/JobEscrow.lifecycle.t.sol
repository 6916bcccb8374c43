// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IJobEscrow} from "../interfaces/IJobEscrow.sol";
import {EscrowTest} from "./utils/EscrowTest.sol";

/// @notice The job lifecycle through the single calls: each operator move and its event, getJob at each
/// status, skipped steps, cancelling, the deadline, reclaiming, withdrawing, and every revert of those paths.
contract JobEscrowLifecycleTest is EscrowTest {
    uint256 internal constant PRICE = 0.0003 ether; // the typical job at the default pricing

    // ------------------------------------------------------------------ forward path

    function test_lifecycle_acceptRunComplete() public {
        uint256 jobId = _submitTypical(alice);
        uint64 deadline = escrow.getJob(jobId).deadline;

        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobAccepted(jobId, REMOTE_ID);
        _accept(jobId);
        _assertJob(jobId, alice, IJobEscrow.Status.Accepted, PRICE, 0);

        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobRunning(jobId);
        _run(jobId);
        _assertJob(jobId, alice, IJobEscrow.Status.Running, PRICE, 0);
        assertEq(escrow.creditOf(admin), 0, "nothing earned before completion");

        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobCompleted(jobId, RESULT_HASH, RESULT_URI);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(admin, PRICE);
        _complete(jobId);

        _assertJob(jobId, alice, IJobEscrow.Status.Completed, 0, RESULT_HASH);
        IJobEscrow.Job memory job = escrow.getJob(jobId);
        assertEq(job.deadline, deadline, "deadline unchanged");
        assertEq(job.cancelRequested, false, "cancelRequested");
        assertEq(escrow.creditOf(admin), PRICE, "earnings credited to the treasury");
        assertEq(escrow.creditOf(alice), 0, "requester gets nothing back");
        assertEq(address(escrow).balance, PRICE, "still held until withdrawn");

        uint256 before = admin.balance;
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Withdrawn(admin, PRICE);
        vm.prank(admin);
        escrow.withdraw();
        assertEq(admin.balance - before, PRICE, "treasury paid");
        assertEq(escrow.creditOf(admin), 0, "credit cleared");
        assertEq(address(escrow).balance, 0, "escrow empty");
    }

    function test_lifecycle_failRefundsRequester() public {
        uint256 jobId = _jobIn(IJobEscrow.Status.Running);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobFailed(jobId, "out of memory");
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(alice, PRICE);
        vm.prank(operator);
        escrow.failJob(jobId, "out of memory");
        _assertJob(jobId, alice, IJobEscrow.Status.Failed, 0, 0);
        assertEq(escrow.creditOf(alice), PRICE, "refund credited");
        assertEq(escrow.creditOf(admin), 0, "no earnings");

        uint256 before = alice.balance;
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Withdrawn(alice, PRICE);
        vm.prank(alice);
        escrow.withdraw();
        assertEq(alice.balance - before, PRICE, "refund paid");
    }

    function test_lifecycle_submittedToCompleted_skipsSteps() public {
        uint256 jobId = _submitTypical(alice);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobCompleted(jobId, RESULT_HASH, RESULT_URI);
        _complete(jobId);
        _assertJob(jobId, alice, IJobEscrow.Status.Completed, 0, RESULT_HASH);
        assertEq(escrow.creditOf(admin), PRICE, "earnings");
    }

    function test_lifecycle_submittedToFailed_skipsSteps() public {
        uint256 jobId = _submitTypical(alice);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobFailed(jobId, "CE rejected the job");
        vm.prank(operator);
        escrow.failJob(jobId, "CE rejected the job");
        _assertJob(jobId, alice, IJobEscrow.Status.Failed, 0, 0);
        assertEq(escrow.creditOf(alice), PRICE, "refund");
    }

    function test_lifecycle_submittedToRunning_andAcceptedToTerminal_skipSteps() public {
        uint256 a = _submitTypical(alice);
        _run(a);
        _assertJob(a, alice, IJobEscrow.Status.Running, PRICE, 0);
        uint256 b = _jobIn(IJobEscrow.Status.Accepted);
        _complete(b);
        _assertJob(b, alice, IJobEscrow.Status.Completed, 0, RESULT_HASH);
        uint256 c = _jobIn(IJobEscrow.Status.Accepted);
        _fail(c);
        _assertJob(c, alice, IJobEscrow.Status.Failed, 0, 0);
    }

    function test_getJob_unknownIdIsAllZero() public view {
        IJobEscrow.Job memory job = escrow.getJob(12345);
        assertEq(job.requester, address(0), "requester");
        assertEq(job.status, IJobEscrow.Status.None, "status");
        assertEq(job.deadline, 0, "deadline");
        assertEq(job.payment, 0, "payment");
    }

    function test_completeJob_zeroResultHash_reverts() public {
        uint256 jobId = _jobIn(IJobEscrow.Status.Running);
        vm.prank(operator);
        vm.expectRevert(_err(IJobEscrow.ZeroResultHash.selector, jobId));
        escrow.completeJob(jobId, bytes32(0), RESULT_URI);
        _assertJob(jobId, alice, IJobEscrow.Status.Running, PRICE, 0);
    }

    // ------------------------------------------------------------------ unknown jobs

    function test_unknownJob_everyCallReverts() public {
        _submitTypical(alice); // job 1 exists; 0 and 2 do not
        uint256[2] memory ids = [uint256(0), 2];
        for (uint256 i; i < ids.length; ++i) {
            bytes memory err = _err(IJobEscrow.JobNotFound.selector, ids[i]);
            vm.prank(alice);
            vm.expectRevert(err);
            escrow.cancelJob(ids[i]);
            vm.expectRevert(err);
            escrow.reclaimExpired(ids[i]);
            for (uint8 to = 2; to <= 5; ++to) {
                vm.prank(operator);
                vm.expectRevert(err);
                _operatorWrite(ids[i], IJobEscrow.Status(to));
            }
        }
    }

    // ------------------------------------------------------------------ illegal operator moves

    function test_invalidTransition_fromAccepted() public {
        _assertIllegalMovesRejected(_jobIn(IJobEscrow.Status.Accepted), IJobEscrow.Status.Accepted);
    }

    function test_invalidTransition_fromRunning() public {
        _assertIllegalMovesRejected(_jobIn(IJobEscrow.Status.Running), IJobEscrow.Status.Running);
    }

    function test_invalidTransition_fromCompleted() public {
        uint256 jobId = _jobIn(IJobEscrow.Status.Completed);
        _assertIllegalMovesRejected(jobId, IJobEscrow.Status.Completed);
        _assertJob(jobId, alice, IJobEscrow.Status.Completed, 0, RESULT_HASH);
        assertEq(escrow.creditOf(admin), PRICE, "paid once");
    }

    function test_invalidTransition_fromFailed() public {
        uint256 jobId = _jobIn(IJobEscrow.Status.Failed);
        _assertIllegalMovesRejected(jobId, IJobEscrow.Status.Failed);
        assertEq(escrow.creditOf(alice), PRICE, "refunded once");
    }

    function test_invalidTransition_fromCancelledByOperator() public {
        uint256 jobId = _jobIn(IJobEscrow.Status.Cancelled);
        _assertIllegalMovesRejected(jobId, IJobEscrow.Status.Cancelled);
        assertEq(escrow.creditOf(alice), PRICE, "refunded once");
    }

    function test_invalidTransition_fromCancelledByRequester() public {
        uint256 jobId = _submitTypical(alice);
        vm.prank(alice);
        escrow.cancelJob(jobId);
        _assertIllegalMovesRejected(jobId, IJobEscrow.Status.Cancelled);
        assertEq(escrow.creditOf(alice), PRICE, "refunded once");
    }

    function test_invalidTransition_fromExpired() public {
        uint256 jobId = _jobIn(IJobEscrow.Status.Expired);
        _assertIllegalMovesRejected(jobId, IJobEscrow.Status.Expired);
        assertEq(escrow.creditOf(alice), PRICE, "refunded once");
    }

    function test_invalidTransition_sameStatusTwice() public {
        uint256 jobId = _jobIn(IJobEscrow.Status.Accepted);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                IJobEscrow.InvalidTransition.selector, jobId, IJobEscrow.Status.Accepted, IJobEscrow.Status.Accepted
            )
        );
        escrow.acceptJob(jobId, "another remote job");
    }

    // ------------------------------------------------------------------ cancelling

    function test_cancel_submitted_refundsAtOnce() public {
        uint256 jobId = _submitTypical(alice);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobCancelled(jobId);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(alice, PRICE);
        vm.prank(alice);
        escrow.cancelJob(jobId);
        _assertJob(jobId, alice, IJobEscrow.Status.Cancelled, 0, 0);
        assertEq(escrow.getJob(jobId).cancelRequested, false, "settled, not marked");
        assertEq(escrow.creditOf(alice), PRICE, "refund");
    }

    function test_cancel_accepted_onlyMarks_thenOperatorCancels() public {
        uint256 jobId = _jobIn(IJobEscrow.Status.Accepted);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.CancelRequested(jobId);
        vm.prank(alice);
        escrow.cancelJob(jobId);
        _assertJob(jobId, alice, IJobEscrow.Status.Accepted, PRICE, 0);
        assertEq(escrow.getJob(jobId).cancelRequested, true, "marked");
        assertEq(escrow.creditOf(alice), 0, "no refund yet");

        vm.prank(alice);
        vm.expectRevert(_err(IJobEscrow.CancelAlreadyRequested.selector, jobId));
        escrow.cancelJob(jobId);

        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobCancelled(jobId);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(alice, PRICE);
        _operatorCancel(jobId);
        _assertJob(jobId, alice, IJobEscrow.Status.Cancelled, 0, 0);
        assertEq(escrow.creditOf(alice), PRICE, "refund");
    }

    function test_cancel_running_operatorCompletesAnyway() public {
        uint256 jobId = _jobIn(IJobEscrow.Status.Running);
        vm.prank(alice);
        escrow.cancelJob(jobId);
        // The remote job had already finished: the operator ends it as Completed and is paid.
        _complete(jobId);
        _assertJob(jobId, alice, IJobEscrow.Status.Completed, 0, RESULT_HASH);
        assertEq(escrow.getJob(jobId).cancelRequested, true, "flag kept");
        assertEq(escrow.creditOf(admin), PRICE, "treasury paid");
        assertEq(escrow.creditOf(alice), 0, "no refund");
    }

    function test_cancel_requested_canStillRunOrFail() public {
        uint256 jobId = _jobIn(IJobEscrow.Status.Accepted);
        vm.prank(alice);
        escrow.cancelJob(jobId);
        _run(jobId);
        _assertJob(jobId, alice, IJobEscrow.Status.Running, PRICE, 0);
        vm.prank(alice);
        vm.expectRevert(_err(IJobEscrow.CancelAlreadyRequested.selector, jobId));
        escrow.cancelJob(jobId);
        _fail(jobId);
        _assertJob(jobId, alice, IJobEscrow.Status.Failed, 0, 0);
        assertEq(escrow.creditOf(alice), PRICE, "refund");
    }

    function test_cancel_notRequester_reverts() public {
        uint256 jobId = _submitTypical(alice);
        address[3] memory others = [bob, operator, admin];
        for (uint256 i; i < others.length; ++i) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.NotRequester.selector, jobId, others[i]));
            escrow.cancelJob(jobId);
        }
        _assertJob(jobId, alice, IJobEscrow.Status.Submitted, PRICE, 0);
    }

    function test_cancel_afterDeadline_accepted_reverts() public {
        uint256 jobId = _jobIn(IJobEscrow.Status.Accepted);
        uint64 deadline = escrow.getJob(jobId).deadline;
        vm.warp(deadline + 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.DeadlinePassed.selector, jobId, deadline));
        escrow.cancelJob(jobId);
        // The deadline check comes before the already-requested one.
        vm.warp(deadline);
        vm.prank(alice);
        escrow.cancelJob(jobId);
        vm.warp(deadline + 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.DeadlinePassed.selector, jobId, deadline));
        escrow.cancelJob(jobId);
    }

    /// @dev Pins current behaviour: a job still Submitted is cancelled and refunded even after its deadline
    /// (docs/PROTOCOL.md says both "the requester cancels a Submitted job at once" and "a job not terminal by
    /// the deadline can only be settled by reclaimExpired"; the money goes to the requester either way, but the
    /// status is Cancelled rather than Expired and no Expired callback runs).
    function test_cancel_afterDeadline_submitted_stillRefunds() public {
        uint256 jobId = _submitTypical(alice);
        vm.warp(escrow.getJob(jobId).deadline + 1);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobCancelled(jobId);
        vm.prank(alice);
        escrow.cancelJob(jobId);
        _assertJob(jobId, alice, IJobEscrow.Status.Cancelled, 0, 0);
        assertEq(escrow.creditOf(alice), PRICE, "refund");
    }

    function test_cancel_terminal_reverts() public {
        IJobEscrow.Status[4] memory ends = [
            IJobEscrow.Status.Completed,
            IJobEscrow.Status.Failed,
            IJobEscrow.Status.Cancelled,
            IJobEscrow.Status.Expired
        ];
        for (uint256 i; i < ends.length; ++i) {
            uint256 jobId = _jobIn(ends[i]);
            vm.prank(alice);
            vm.expectRevert(
                abi.encodeWithSelector(
                    IJobEscrow.InvalidTransition.selector, jobId, ends[i], IJobEscrow.Status.Cancelled
                )
            );
            escrow.cancelJob(jobId);
        }
    }

    // ------------------------------------------------------------------ the deadline

    function test_deadline_operatorMayWriteAtDeadline() public {
        uint256 jobId = _submitTypical(alice);
        uint64 deadline = escrow.getJob(jobId).deadline;
        assertEq(deadline, START_TIME + 3600 + GRACE, "deadline");
        vm.warp(deadline);
        _accept(jobId);
        _run(jobId);
        _complete(jobId);
        _assertJob(jobId, alice, IJobEscrow.Status.Completed, 0, RESULT_HASH);
    }

    function test_deadline_everyOperatorWriteAfterItReverts() public {
        IJobEscrow.Status[3] memory froms =
            [IJobEscrow.Status.Submitted, IJobEscrow.Status.Accepted, IJobEscrow.Status.Running];
        for (uint256 i; i < froms.length; ++i) {
            uint256 jobId = _jobIn(froms[i]);
            uint64 deadline = escrow.getJob(jobId).deadline;
            vm.warp(deadline + 1);
            for (uint8 to = uint8(froms[i]) + 1; to <= 5; ++to) {
                vm.prank(operator);
                vm.expectRevert(abi.encodeWithSelector(IJobEscrow.DeadlinePassed.selector, jobId, deadline));
                _operatorWrite(jobId, IJobEscrow.Status(to));
            }
            _assertJob(jobId, alice, froms[i], PRICE, 0);
            vm.warp(START_TIME);
        }
    }

    function test_deadline_operatorCannotEvenCompleteACancelRequestedJob() public {
        uint256 jobId = _jobIn(IJobEscrow.Status.Running);
        vm.prank(alice);
        escrow.cancelJob(jobId);
        uint64 deadline = escrow.getJob(jobId).deadline;
        vm.warp(deadline + 1 days);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.DeadlinePassed.selector, jobId, deadline));
        escrow.completeJob(jobId, RESULT_HASH, RESULT_URI);
    }

    // ------------------------------------------------------------------ reclaiming

    function test_reclaim_beforeOrAtDeadline_reverts() public {
        uint256 jobId = _submitTypical(alice);
        uint64 deadline = escrow.getJob(jobId).deadline;
        bytes memory err = abi.encodeWithSelector(IJobEscrow.JobNotExpired.selector, jobId, deadline);
        vm.expectRevert(err);
        escrow.reclaimExpired(jobId);
        vm.warp(deadline);
        vm.expectRevert(err);
        escrow.reclaimExpired(jobId);
    }

    function test_reclaim_afterDeadline_anyoneExpiresAndRefunds() public {
        IJobEscrow.Status[3] memory froms =
            [IJobEscrow.Status.Submitted, IJobEscrow.Status.Accepted, IJobEscrow.Status.Running];
        for (uint256 i; i < froms.length; ++i) {
            uint256 jobId = _jobIn(froms[i]);
            vm.warp(escrow.getJob(jobId).deadline + 1);
            vm.expectEmit(true, true, true, true, address(escrow));
            emit IJobEscrow.JobExpired(jobId);
            vm.expectEmit(true, true, true, true, address(escrow));
            emit IJobEscrow.Credited(alice, PRICE);
            vm.prank(stranger);
            escrow.reclaimExpired(jobId);
            _assertJob(jobId, alice, IJobEscrow.Status.Expired, 0, 0);
            assertEq(escrow.creditOf(alice), PRICE * (i + 1), "refunds add up");
            assertEq(escrow.creditOf(stranger), 0, "caller gets nothing");
            vm.warp(START_TIME);
        }
    }

    function test_reclaim_cancelRequestedJob() public {
        uint256 jobId = _jobIn(IJobEscrow.Status.Accepted);
        vm.prank(alice);
        escrow.cancelJob(jobId);
        vm.warp(escrow.getJob(jobId).deadline + 1);
        escrow.reclaimExpired(jobId);
        _assertJob(jobId, alice, IJobEscrow.Status.Expired, 0, 0);
        assertEq(escrow.creditOf(alice), PRICE, "refund");
    }

    function test_reclaim_terminal_reverts() public {
        IJobEscrow.Status[4] memory ends = [
            IJobEscrow.Status.Completed,
            IJobEscrow.Status.Failed,
            IJobEscrow.Status.Cancelled,
            IJobEscrow.Status.Expired
        ];
        for (uint256 i; i < ends.length; ++i) {
            uint256 jobId = _jobIn(ends[i]);
            vm.warp(START_TIME + 365 days);
            vm.expectRevert(
                abi.encodeWithSelector(IJobEscrow.InvalidTransition.selector, jobId, ends[i], IJobEscrow.Status.Expired)
            );
            escrow.reclaimExpired(jobId);
            vm.warp(START_TIME);
        }
        // Exactly one refund each for Failed, Cancelled and Expired; the Completed one paid the treasury.
        assertEq(escrow.creditOf(alice), 3 * PRICE, "refunds");
        assertEq(escrow.creditOf(admin), PRICE, "earnings");
        _assertSolvent(_accounts(alice, admin));
    }

    // ------------------------------------------------------------------ withdrawing

    function test_withdraw_nothing_reverts() public {
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.NothingToWithdraw.selector, bob));
        escrow.withdraw();
    }

    function test_withdraw_paysAllCreditsOnce() public {
        uint256 a = _submitTypical(alice);
        uint256 b = _jobIn(IJobEscrow.Status.Running);
        vm.prank(alice);
        escrow.cancelJob(a);
        _fail(b);
        assertEq(escrow.creditOf(alice), 2 * PRICE, "two refunds");
        uint256 before = alice.balance;
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Withdrawn(alice, 2 * PRICE);
        vm.prank(alice);
        escrow.withdraw();
        assertEq(alice.balance - before, 2 * PRICE, "paid");
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.NothingToWithdraw.selector, alice));
        escrow.withdraw();
        assertEq(address(escrow).balance, 0, "empty");
    }

    // ------------------------------------------------------------------ helpers

    /// @dev Every operator single call that `from` cannot take reverts with InvalidTransition(jobId, from,
    /// to), leaving the job as it was; the requester's cancel and reclaim do too when `from` is terminal.
    function _assertIllegalMovesRejected(uint256 jobId, IJobEscrow.Status from) internal {
        IJobEscrow.Job memory before = escrow.getJob(jobId);
        bool terminal = from >= IJobEscrow.Status.Completed;
        for (uint8 to = 2; to <= 5; ++to) {
            if (!terminal && to > uint8(from)) continue; // a legal forward move
            vm.prank(operator);
            vm.expectRevert(
                abi.encodeWithSelector(IJobEscrow.InvalidTransition.selector, jobId, from, IJobEscrow.Status(to))
            );
            _operatorWrite(jobId, IJobEscrow.Status(to));
        }
        IJobEscrow.Job memory after_ = escrow.getJob(jobId);
        assertEq(after_.status, before.status, "status unchanged");
        assertEq(after_.payment, before.payment, "payment unchanged");
        assertEq(after_.resultHash, before.resultHash, "resultHash unchanged");
    }

    function _operatorWrite(uint256 jobId, IJobEscrow.Status to) internal {
        if (to == IJobEscrow.Status.Accepted) escrow.acceptJob(jobId, REMOTE_ID);
        else if (to == IJobEscrow.Status.Running) escrow.markRunning(jobId);
        else if (to == IJobEscrow.Status.Completed) escrow.completeJob(jobId, RESULT_HASH, RESULT_URI);
        else escrow.failJob(jobId, "failed");
    }
}
