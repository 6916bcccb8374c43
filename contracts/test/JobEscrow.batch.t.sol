// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IJobEscrow} from "../interfaces/IJobEscrow.sol";
import {EscrowTest} from "./utils/EscrowTest.sol";
import {Specs} from "./utils/Specs.sol";
import {Vm} from "./utils/Vm.sol";

/// @notice applyUpdates: valid items apply as the single calls do, every invalid item is skipped with
/// `UpdateSkipped(jobId, status, selector)` naming the error the single call reverts with, and the batch
/// never reverts; earnings of the batch reach the treasury in one credit.
contract JobEscrowBatchTest is EscrowTest {
    uint256 internal constant PRICE = 0.0003 ether;

    function test_batch_mixOfValidAndInvalidItems() public {
        // Job 1 passes its deadline before the batch; the others are fresh.
        uint256 late = _submitTypical(alice);
        vm.warp(escrow.getJob(late).deadline + 1);
        uint256 toAccept = _submitTypical(alice);
        uint256 toRun = _jobIn(IJobEscrow.Status.Accepted);
        uint256 toComplete = _jobIn(IJobEscrow.Status.Running);
        uint256 toFail = _jobIn(IJobEscrow.Status.Running);
        uint256 toCancel = _jobIn(IJobEscrow.Status.Accepted);
        vm.prank(alice);
        escrow.cancelJob(toCancel);
        uint256 done = _jobIn(IJobEscrow.Status.Completed);
        // A second completion at a different price, skipping Accepted and Running.
        uint256 bigPrice = _price(Specs.sized(8, 3), 0);
        uint256 bigJob = _submit(bob, Specs.sized(8, 3), 0, bigPrice);

        IJobEscrow.Update[] memory u = new IJobEscrow.Update[](14);
        u[0] = _update(toAccept, IJobEscrow.Status.Accepted, 0, "remote-2");
        u[1] = _item(999, 2, RESULT_HASH); // unknown job
        u[2] = _item(toAccept, 0, 0); // None
        u[3] = _item(toAccept, 1, 0); // Submitted
        u[4] = _item(toAccept, 7, 0); // Expired
        u[5] = _item(toAccept, 8, 0); // out of range
        u[6] = _item(toAccept, 255, 0); // out of range
        u[7] = _update(late, IJobEscrow.Status.Accepted, 0, "too late");
        u[8] = _update(toRun, IJobEscrow.Status.Running, 0, "");
        u[9] = _update(toComplete, IJobEscrow.Status.Completed, bytes32(0), RESULT_URI); // zero hash
        u[10] = _update(toComplete, IJobEscrow.Status.Completed, RESULT_HASH, RESULT_URI);
        u[11] = _update(toFail, IJobEscrow.Status.Failed, 0, "exit code 1");
        u[12] = _update(toCancel, IJobEscrow.Status.Cancelled, 0, "cancelled remotely");
        u[13] = _update(done, IJobEscrow.Status.Failed, 0, "backwards from terminal");
        IJobEscrow.Update[] memory all = new IJobEscrow.Update[](18);
        for (uint256 i; i < u.length; ++i) {
            all[i] = u[i];
        }
        all[14] = _update(toRun, IJobEscrow.Status.Accepted, 0, "backwards"); // now Running
        all[15] = _update(toAccept, IJobEscrow.Status.Cancelled, 0, "not requested");
        all[16] = _update(bigJob, IJobEscrow.Status.Completed, RESULT_HASH, RESULT_URI);
        all[17] = _update(toComplete, IJobEscrow.Status.Completed, RESULT_HASH, "twice");

        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobAccepted(toAccept, "remote-2");
        _expectSkipped(999, 2, IJobEscrow.JobNotFound.selector);
        _expectSkipped(toAccept, 0, IJobEscrow.InvalidStatus.selector);
        _expectSkipped(toAccept, 1, IJobEscrow.InvalidStatus.selector);
        _expectSkipped(toAccept, 7, IJobEscrow.InvalidStatus.selector);
        _expectSkipped(toAccept, 8, IJobEscrow.InvalidStatus.selector);
        _expectSkipped(toAccept, 255, IJobEscrow.InvalidStatus.selector);
        _expectSkipped(late, 2, IJobEscrow.DeadlinePassed.selector);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobRunning(toRun);
        _expectSkipped(toComplete, 4, IJobEscrow.ZeroResultHash.selector);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobCompleted(toComplete, RESULT_HASH, RESULT_URI);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobFailed(toFail, "exit code 1");
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(alice, PRICE);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobCancelled(toCancel);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(alice, PRICE);
        _expectSkipped(done, 5, IJobEscrow.InvalidTransition.selector);
        _expectSkipped(toRun, 2, IJobEscrow.InvalidTransition.selector);
        _expectSkipped(toAccept, 6, IJobEscrow.CancelNotRequested.selector);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobCompleted(bigJob, RESULT_HASH, RESULT_URI);
        _expectSkipped(toComplete, 4, IJobEscrow.InvalidTransition.selector);
        // Earnings of the batch: one credit to the treasury, at the end.
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(admin, PRICE + bigPrice);

        uint256 treasuryBefore = escrow.creditOf(admin);
        vm.recordLogs();
        vm.prank(operator);
        escrow.applyUpdates(all);
        Vm.Log[] memory logs = vm.getRecordedLogs();

        assertEq(_count(logs, IJobEscrow.UpdateSkipped.selector), 12, "skipped items");
        assertEq(_count(logs, IJobEscrow.Credited.selector), 3, "two refunds and one treasury credit");
        assertEq(escrow.creditOf(admin) - treasuryBefore, PRICE + bigPrice, "earnings");
        _assertJob(late, alice, IJobEscrow.Status.Submitted, PRICE, 0);
        _assertJob(toAccept, alice, IJobEscrow.Status.Accepted, PRICE, 0);
        _assertJob(toRun, alice, IJobEscrow.Status.Running, PRICE, 0);
        _assertJob(toComplete, alice, IJobEscrow.Status.Completed, 0, RESULT_HASH);
        _assertJob(toFail, alice, IJobEscrow.Status.Failed, 0, 0);
        _assertJob(toCancel, alice, IJobEscrow.Status.Cancelled, 0, 0);
        _assertJob(done, alice, IJobEscrow.Status.Completed, 0, RESULT_HASH);
        _assertJob(bigJob, bob, IJobEscrow.Status.Completed, 0, RESULT_HASH);
        _assertSolvent(_accounts(alice, bob));
    }

    function test_batch_walksOneJobThroughEveryStep() public {
        uint256 jobId = _submitTypical(alice);
        IJobEscrow.Update[] memory u = new IJobEscrow.Update[](3);
        u[0] = _update(jobId, IJobEscrow.Status.Accepted, 0, REMOTE_ID);
        u[1] = _update(jobId, IJobEscrow.Status.Running, 0, "");
        u[2] = _update(jobId, IJobEscrow.Status.Completed, RESULT_HASH, RESULT_URI);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobAccepted(jobId, REMOTE_ID);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobRunning(jobId);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobCompleted(jobId, RESULT_HASH, RESULT_URI);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(admin, PRICE);
        vm.prank(operator);
        escrow.applyUpdates(u);
        _assertJob(jobId, alice, IJobEscrow.Status.Completed, 0, RESULT_HASH);
    }

    function test_batch_onlyInvalidItems_changesNothing() public {
        uint256 jobId = _jobIn(IJobEscrow.Status.Completed);
        uint256 creditBefore = escrow.creditOf(admin);
        IJobEscrow.Update[] memory u = new IJobEscrow.Update[](2);
        u[0] = _update(jobId, IJobEscrow.Status.Completed, keccak256("other"), "again");
        u[1] = _update(jobId, IJobEscrow.Status.Cancelled, 0, "");
        vm.recordLogs();
        vm.prank(operator);
        escrow.applyUpdates(u);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 2, "only the two UpdateSkipped");
        assertEq(_count(logs, IJobEscrow.UpdateSkipped.selector), 2, "skipped");
        assertEq(escrow.creditOf(admin), creditBefore, "no second payout");
        _assertJob(jobId, alice, IJobEscrow.Status.Completed, 0, RESULT_HASH);
    }

    function test_batch_empty_isANoOp() public {
        vm.recordLogs();
        vm.prank(operator);
        escrow.applyUpdates(new IJobEscrow.Update[](0));
        assertEq(vm.getRecordedLogs().length, 0, "no events");
    }

    function test_batch_illegalMovesFromEveryStatus() public {
        IJobEscrow.Status[6] memory froms = [
            IJobEscrow.Status.Accepted,
            IJobEscrow.Status.Running,
            IJobEscrow.Status.Completed,
            IJobEscrow.Status.Failed,
            IJobEscrow.Status.Cancelled,
            IJobEscrow.Status.Expired
        ];
        for (uint256 i; i < froms.length; ++i) {
            uint256 jobId = _jobIn(froms[i]);
            bool terminal = froms[i] >= IJobEscrow.Status.Completed;
            for (uint8 to = 2; to <= 6; ++to) {
                if (!terminal && to > uint8(froms[i])) continue;
                IJobEscrow.Update[] memory u = new IJobEscrow.Update[](1);
                u[0] = _item(jobId, to, RESULT_HASH);
                _expectSkipped(jobId, to, IJobEscrow.InvalidTransition.selector);
                vm.prank(operator);
                escrow.applyUpdates(u);
                assertEq(escrow.getJob(jobId).status, froms[i], "unchanged");
            }
        }
    }

    function test_batch_operatorCancelOfSubmittedJob_isNotRequested() public {
        uint256 jobId = _submitTypical(alice);
        IJobEscrow.Update[] memory u = new IJobEscrow.Update[](1);
        u[0] = _update(jobId, IJobEscrow.Status.Cancelled, 0, "");
        _expectSkipped(jobId, 6, IJobEscrow.CancelNotRequested.selector);
        vm.prank(operator);
        escrow.applyUpdates(u);
        _assertJob(jobId, alice, IJobEscrow.Status.Submitted, PRICE, 0);
    }

    /// @dev A reference model of the transition rules (docs/PROTOCOL.md) against the contract: for a job in any
    /// status (or none), before or after its deadline, with or without a cancel request, an update to any
    /// uint8 status with or without a result hash is applied exactly when the model allows it; otherwise it
    /// is skipped with the model's reason, and the single call (for the four statuses that have one)
    /// reverts with that very error and its arguments.
    function testFuzz_batch_itemMatchesModelAndSingleCall(
        uint8 fromSeed,
        uint8 toSeed,
        bool zeroHash,
        bool afterDeadline,
        bool cancelRequested
    ) public {
        IJobEscrow.Status from = IJobEscrow.Status(fromSeed % 8);
        uint8 to = toSeed % 4 == 0 ? toSeed : toSeed % 9; // mostly 0..8, sometimes anything
        uint256 jobId = 999;
        if (from != IJobEscrow.Status.None) jobId = _jobIn(from);
        cancelRequested = cancelRequested && (from == IJobEscrow.Status.Accepted || from == IJobEscrow.Status.Running);
        if (cancelRequested) {
            vm.prank(alice);
            escrow.cancelJob(jobId);
        }
        uint64 deadline = escrow.getJob(jobId).deadline;
        if (afterDeadline) vm.warp(uint256(deadline) + 1 + uint256(toSeed) * 1000);
        bytes32 hash = zeroHash ? bytes32(0) : RESULT_HASH;

        bytes memory err = _modelRejection(jobId, from, to, hash, afterDeadline, cancelRequested, deadline);
        IJobEscrow.Update[] memory u = new IJobEscrow.Update[](1);
        u[0] = _item(jobId, to, hash);
        // forge-lint: disable-next-line(unsafe-typecast)
        if (err.length != 0) _expectSkipped(jobId, to, bytes4(err)); // the selector: its first four bytes
        vm.recordLogs();
        vm.prank(operator);
        escrow.applyUpdates(u);
        Vm.Log[] memory logs = vm.getRecordedLogs();

        if (err.length == 0) {
            assertEq(_count(logs, IJobEscrow.UpdateSkipped.selector), 0, "applied, not skipped");
            assertEq(uint8(escrow.getJob(jobId).status), to, "status written");
            return;
        }
        assertEq(logs.length, 1, "only UpdateSkipped");
        assertEq(escrow.getJob(jobId).status, from, "unchanged");
        if (to >= 2 && to <= 5) {
            vm.prank(operator);
            vm.expectRevert(err);
            _operatorWrite(jobId, IJobEscrow.Status(to), hash);
        }
    }

    // ------------------------------------------------------------------ helpers

    function _modelRejection(
        uint256 jobId,
        IJobEscrow.Status from,
        uint8 to,
        bytes32 hash,
        bool late,
        bool cancelRequested,
        uint64 deadline
    ) internal pure returns (bytes memory) {
        if (from == IJobEscrow.Status.None) return _err(IJobEscrow.JobNotFound.selector, jobId);
        if (to < 2 || to > 6) return abi.encodeWithSelector(IJobEscrow.InvalidStatus.selector, jobId, to);
        if (from >= IJobEscrow.Status.Completed || uint8(from) >= to) {
            return abi.encodeWithSelector(IJobEscrow.InvalidTransition.selector, jobId, from, IJobEscrow.Status(to));
        }
        if (late) return abi.encodeWithSelector(IJobEscrow.DeadlinePassed.selector, jobId, deadline);
        if (to == 6 && !cancelRequested) return _err(IJobEscrow.CancelNotRequested.selector, jobId);
        if (to == 4 && hash == 0) return _err(IJobEscrow.ZeroResultHash.selector, jobId);
        return "";
    }

    function _operatorWrite(uint256 jobId, IJobEscrow.Status to, bytes32 hash) internal {
        if (to == IJobEscrow.Status.Accepted) escrow.acceptJob(jobId, REMOTE_ID);
        else if (to == IJobEscrow.Status.Running) escrow.markRunning(jobId);
        else if (to == IJobEscrow.Status.Completed) escrow.completeJob(jobId, hash, RESULT_URI);
        else escrow.failJob(jobId, "failed");
    }

    function _item(uint256 jobId, uint8 status, bytes32 hash) internal pure returns (IJobEscrow.Update memory) {
        return IJobEscrow.Update({jobId: jobId, status: status, resultHash: hash, data: "x"});
    }

    function _expectSkipped(uint256 jobId, uint8 status, bytes4 reason) internal {
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.UpdateSkipped(jobId, status, reason);
    }
}
