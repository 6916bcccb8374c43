// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IJobEscrow} from "../interfaces/IJobEscrow.sol";
import {
    BigRevertConsumer,
    GasBurnerConsumer,
    RecordingConsumer,
    ReenteringGriefConsumer,
    Requester,
    RevertingConsumer,
    SimulationAwareBurnerConsumer
} from "./utils/Consumers.sol";
import {EscrowTest} from "./utils/EscrowTest.sol";
import {Specs} from "./utils/Specs.sol";
import {Vm} from "./utils/Vm.sol";

/// @notice Regression tests for the contract findings of the hostile-requester review (issue 9): a consumer
/// that burns its gas only when mined cannot revert a batch (finding 2); the callback fee pays for the
/// callback of a failed job (finding 4); the admin limits are capped and `reclaimExpired` refunds whatever
/// the consumer does (finding 7); a cancel once Running pays for the hours started (finding 8); an
/// overpayment goes back to the requester (finding 9). Each failed on the contract before the fix.
contract JobEscrowHostileTest is EscrowTest {
    uint256 internal constant BASE_FEE = 0.0001 ether;
    uint256 internal constant VCPU_HOUR = 0.0001 ether;
    uint256 internal constant CALLBACK_GAS_PRICE = 2 gwei;
    uint32 internal constant MAX_CALLBACK_GAS = 2_000_000;

    function setUp() public override {
        super.setUp();
        vm.deal(address(this), 1000 ether);
    }

    // ------------------------------------------------------------------ finding 2: batches

    /// @dev The review's attack: a consumer cheap under simulation (gas price 0) burns its whole limit once
    /// mined, so the next callback item no longer gets its gas. That item is skipped with
    /// `UpdateSkipped(..., InsufficientGasForCallback)`, the batch goes through, and the items after it
    /// (without callbacks) are applied. Before the fix the whole batch reverted, every time it was re-sent.
    function test_finding2_gasBurnerCannotRevertTheBatch() public {
        vm.txGasPrice(1 gwei);
        SimulationAwareBurnerConsumer burner = new SimulationAwareBurnerConsumer(escrow);
        RecordingConsumer honest = new RecordingConsumer(escrow);
        uint256 a = _submitFrom(burner, 600_000);
        uint256 b = _submitFrom(honest, 600_000);
        uint256 c = _submitTypical(alice);
        uint256 d = _submitTypical(bob);
        IJobEscrow.Update[] memory u = new IJobEscrow.Update[](4);
        u[0] = _update(a, IJobEscrow.Status.Completed, RESULT_HASH, RESULT_URI);
        u[1] = _update(b, IJobEscrow.Status.Completed, RESULT_HASH, RESULT_URI);
        u[2] = _update(c, IJobEscrow.Status.Completed, RESULT_HASH, RESULT_URI);
        u[3] = _update(d, IJobEscrow.Status.Failed, 0, "remote job failed");

        vm.recordLogs();
        vm.prank(operator);
        escrow.applyUpdates{gas: 900_000}(u);
        Vm.Log[] memory logs = vm.getRecordedLogs();

        assertEq(escrow.getJob(a).status, IJobEscrow.Status.Completed, "the burner's job completed");
        assertEq(burner.calls(), 0, "the burner ran out of gas (its call is undone)");
        assertEq(escrow.getJob(b).status, IJobEscrow.Status.Submitted, "the starved item is skipped, not applied");
        assertEq(honest.calls(), 0, "and its consumer was not called with less than its limit");
        assertEq(escrow.getJob(c).status, IJobEscrow.Status.Completed, "a later item is applied");
        assertEq(escrow.getJob(d).status, IJobEscrow.Status.Failed, "and the one after it");
        assertEq(_count(logs, IJobEscrow.UpdateSkipped.selector), 1, "one item skipped");
        assertEq(_skipReason(logs, b), IJobEscrow.InsufficientGasForCallback.selector, "skipped for its gas");
        assertEq(_count(logs, IJobEscrow.CallbackFailed.selector), 1, "the burner's callback failed");

        // The operator sends the skipped item again with enough gas: it completes with its full limit.
        IJobEscrow.Update[] memory again = new IJobEscrow.Update[](1);
        again[0] = u[1];
        vm.prank(operator);
        escrow.applyUpdates{gas: 1_000_000}(again);
        assertEq(escrow.getJob(b).status, IJobEscrow.Status.Completed, "completed when re-sent");
        assertGe(honest.gasAtEntry(), 599_000, "with its whole limit");
        _assertSolvent(_accounts(address(burner), address(honest)));
    }

    /// @dev The skip decision is made before any effect: a starved Failed item leaves the job, its payment
    /// and every balance exactly as they were.
    function test_finding2_starvedFailedItemChangesNothing() public {
        RecordingConsumer honest = new RecordingConsumer(escrow);
        uint256 jobId = _submitFrom(honest, 1_000_000);
        uint256 payment = escrow.getJob(jobId).payment;
        IJobEscrow.Update[] memory u = new IJobEscrow.Update[](1);
        u[0] = _update(jobId, IJobEscrow.Status.Failed, 0, "remote job failed");
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.UpdateSkipped(
            jobId, uint8(IJobEscrow.Status.Failed), IJobEscrow.InsufficientGasForCallback.selector
        );
        vm.prank(operator);
        escrow.applyUpdates{gas: 700_000}(u);
        _assertJob(jobId, address(honest), IJobEscrow.Status.Submitted, payment, 0);
        assertEq(escrow.creditOf(address(honest)), 0, "no refund credited");
        assertEq(escrow.creditOf(admin), 0, "no fee credited");
        assertEq(honest.calls(), 0, "not called");
    }

    /// @dev A single `completeJob` still reverts: the sender chose the gas, there is no batch to save.
    function test_finding2_singleCompleteStillReverts() public {
        RecordingConsumer honest = new RecordingConsumer(escrow);
        uint256 jobId = _submitFrom(honest, 1_000_000);
        vm.prank(operator);
        (bool ok, bytes memory ret) =
            address(escrow).call{gas: 700_000}(abi.encodeCall(IJobEscrow.completeJob, (jobId, RESULT_HASH, RESULT_URI)));
        assertTrue(!ok, "reverted");
        // The selector is the first four bytes: truncating is the point.
        // forge-lint: disable-next-line(unsafe-typecast)
        assertEq(bytes4(ret), IJobEscrow.InsufficientGasForCallback.selector, "InsufficientGasForCallback");
        assertEq(escrow.getJob(jobId).status, IJobEscrow.Status.Submitted, "nothing written");
    }

    // ------------------------------------------------------------------ finding 4: failed jobs

    /// @dev The review's amplification: a spec the bridge refuses, the largest callback limit and a consumer
    /// that burns it. The operator runs that callback, so the callback fee is the operator's: the refund is the
    /// payment less that fee (before the fix: the whole payment, callback fee included).
    function test_finding4_failedJobWithCallbackKeepsTheCallbackFee() public {
        GasBurnerConsumer burner = new GasBurnerConsumer(escrow);
        uint256 jobId = _submitFrom(burner, MAX_CALLBACK_GAS);
        uint256 payment = escrow.getJob(jobId).payment;
        uint256 callbackFee = CALLBACK_GAS_PRICE * MAX_CALLBACK_GAS;
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(address(burner), payment - callbackFee);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(admin, callbackFee);
        vm.prank(operator);
        escrow.failJob{gas: 2_500_000}(jobId, "unknown app");
        _assertJob(jobId, address(burner), IJobEscrow.Status.Failed, 0, 0);
        assertEq(escrow.creditOf(address(burner)), payment - callbackFee, "refund less the callback fee");
        assertEq(escrow.creditOf(admin), callbackFee, "the callback fee to the treasury");
        _assertSolvent(_accounts(address(burner), admin));
    }

    /// @dev The same through a batch; a failed job without a callback is still refunded in full.
    function test_finding4_batchFailedWithCallbackKeepsTheFee_withoutRefundsAll() public {
        RevertingConsumer reverting = new RevertingConsumer(escrow);
        uint256 withCallback = _submitFrom(reverting, 100_000);
        uint256 without = _submitTypical(alice);
        uint256 paidWith = escrow.getJob(withCallback).payment;
        uint256 paidWithout = escrow.getJob(without).payment;
        IJobEscrow.Update[] memory u = new IJobEscrow.Update[](2);
        u[0] = _update(withCallback, IJobEscrow.Status.Failed, 0, "remote job failed");
        u[1] = _update(without, IJobEscrow.Status.Failed, 0, "remote job failed");
        vm.prank(operator);
        escrow.applyUpdates(u);
        assertEq(escrow.creditOf(address(reverting)), paidWith - CALLBACK_GAS_PRICE * 100_000, "less the fee");
        assertEq(escrow.creditOf(alice), paidWithout, "no callback: the whole payment");
        assertEq(escrow.creditOf(admin), CALLBACK_GAS_PRICE * 100_000, "the fee, once");
        _assertSolvent(_accounts(address(reverting), admin));
    }

    // ------------------------------------------------------------------ finding 7: limits and reclaim

    /// @dev Before the fix `setLimits` took any callback limit, and one above the block gas limit made an
    /// accepted job's payment unrecoverable: even `reclaimExpired` could never give the callback its gas.
    function test_finding7_setLimits_callbackGasAboveTheCap_reverts() public {
        IJobEscrow.Limits memory lim = escrow.limits();
        lim.maxCallbackGasLimit = MAX_CALLBACK_GAS + 1;
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(
                IJobEscrow.LimitAboveCap.selector, "maxCallbackGasLimit", MAX_CALLBACK_GAS + 1, MAX_CALLBACK_GAS
            )
        );
        escrow.setLimits(lim, GRACE);
        lim.maxCallbackGasLimit = MAX_CALLBACK_GAS;
        vm.prank(admin);
        escrow.setLimits(lim, GRACE);
        assertEq(escrow.limits().maxCallbackGasLimit, MAX_CALLBACK_GAS, "the cap itself is allowed");
    }

    /// @dev Hours and grace push the deadline, the only date after which a requester can get its money back
    /// without the operator: both are capped so that a payment is never locked for years.
    function test_finding7_setLimits_hoursAndGraceAboveTheirCaps_revert() public {
        IJobEscrow.Limits memory lim = escrow.limits();
        lim.maxHours = 8761;
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.LimitAboveCap.selector, "maxHours", 8761, 8760));
        escrow.setLimits(lim, GRACE);
        lim.maxHours = 8760;
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.LimitAboveCap.selector, "deadlineGrace", 30 days + 1, 30 days)
        );
        escrow.setLimits(lim, 30 days + 1);
        vm.prank(admin);
        escrow.setLimits(lim, 30 days);
        assertEq(escrow.limits().maxHours, 8760, "a year of hours");
        assertEq(escrow.deadlineGrace(), 30 days, "thirty days of grace");
    }

    /// @dev `reclaimExpired` refunds in full whatever the consumer does, at the largest callback limit, in a
    /// transaction far below a block's gas.
    function test_finding7_reclaimExpired_refundsWhateverTheConsumerDoes() public {
        uint256 other = _submitTypical(bob);
        Requester[] memory consumers = new Requester[](5);
        consumers[0] = new GasBurnerConsumer(escrow);
        consumers[1] = new RevertingConsumer(escrow);
        consumers[2] = new BigRevertConsumer(escrow, 1_000_000);
        consumers[3] = new ReenteringGriefConsumer(escrow, other);
        consumers[4] = new SimulationAwareBurnerConsumer(escrow);
        vm.txGasPrice(1 gwei);
        for (uint256 i; i < consumers.length; ++i) {
            uint256 jobId = _submitFrom(consumers[i], MAX_CALLBACK_GAS);
            _accept(jobId);
            _run(jobId);
            uint256 payment = escrow.getJob(jobId).payment;
            vm.warp(escrow.getJob(jobId).deadline + 1);
            vm.prank(stranger);
            escrow.reclaimExpired{gas: 2_200_000}(jobId);
            _assertJob(jobId, address(consumers[i]), IJobEscrow.Status.Expired, 0, 0);
            assertEq(escrow.creditOf(address(consumers[i])), payment, "the whole payment, fee included");
            vm.warp(START_TIME);
        }
        assertEq(escrow.getJob(other).status, IJobEscrow.Status.Submitted, "the re-entering griefer changed nothing");
        address[] memory accounts = new address[](consumers.length + 2);
        for (uint256 i; i < consumers.length; ++i) {
            accounts[i] = address(consumers[i]);
        }
        accounts[consumers.length] = bob;
        accounts[consumers.length + 1] = admin;
        _assertSolvent(accounts);
    }

    /// @dev A caller who sends too little gas for the callback gets `InsufficientGasForCallback` and changes
    /// nothing (reclaimExpired is open to anyone, so a skip would let anyone deny a consumer its Expired
    /// callback); the next caller with enough gas (at most ~2.1M, far below a block) gets the refund.
    function test_finding7_reclaimExpired_tooLittleGasRevertsThenRefunds() public {
        RecordingConsumer honest = new RecordingConsumer(escrow);
        uint256 jobId = _submitFrom(honest, MAX_CALLBACK_GAS);
        uint256 payment = escrow.getJob(jobId).payment;
        vm.warp(escrow.getJob(jobId).deadline + 1);
        vm.prank(stranger);
        (bool ok, bytes memory ret) =
            address(escrow).call{gas: 1_500_000}(abi.encodeCall(IJobEscrow.reclaimExpired, (jobId)));
        assertTrue(!ok, "too little gas");
        // The selector is the first four bytes: truncating is the point.
        // forge-lint: disable-next-line(unsafe-typecast)
        assertEq(bytes4(ret), IJobEscrow.InsufficientGasForCallback.selector, "InsufficientGasForCallback");
        _assertJob(jobId, address(honest), IJobEscrow.Status.Submitted, payment, 0);
        escrow.reclaimExpired{gas: 2_200_000}(jobId);
        assertEq(escrow.creditOf(address(honest)), payment, "refunded");
        assertGe(honest.gasAtEntry(), MAX_CALLBACK_GAS - 1_000, "the callback got its whole limit");
    }

    // ------------------------------------------------------------------ finding 8: cancel once Running

    /// @dev Before the fix a requester could let a job run for almost all its hours, cancel, and be refunded
    /// in full. Now the operator keeps the base fee and the vCPU-hour price of every hour started since
    /// `JobRunning`; the rest (the unstarted hours, the callback fee: no callback runs on Cancelled) is
    /// refunded.
    function test_finding8_cancelWhileRunningPaysForTheHoursStarted() public {
        RecordingConsumer consumer = new RecordingConsumer(escrow);
        IJobEscrow.JobSpec memory spec = Specs.sized(4, 10);
        uint256 payment = _price(spec, 50_000);
        uint256 jobId = consumer.submit{value: payment}(spec, 50_000);
        _accept(jobId);
        vm.warp(START_TIME + 2 hours); // queued for two hours: not charged
        _run(jobId);
        vm.warp(START_TIME + 2 hours + 3 hours + 30 minutes); // the fourth hour has started
        consumer.cancel(jobId);
        uint256 kept = BASE_FEE + 4 * 4 * VCPU_HOUR;
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobCancelled(jobId);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(address(consumer), payment - kept);
        _operatorCancel(jobId);
        _assertJob(jobId, address(consumer), IJobEscrow.Status.Cancelled, 0, 0);
        assertEq(escrow.creditOf(address(consumer)), payment - kept, "refund: unstarted hours and the callback fee");
        assertEq(escrow.creditOf(admin), kept, "kept: base fee and four started hours");
        assertEq(consumer.calls(), 0, "no callback on Cancelled");
        _assertSolvent(_accounts(address(consumer), admin));
    }

    /// @dev The first second of running starts the first hour; hours past the job's own are never charged;
    /// a cancel before Running refunds everything.
    function test_finding8_hourBoundaries() public {
        IJobEscrow.JobSpec memory spec = Specs.sized(2, 3);
        uint256 payment = _price(spec, 0);
        uint256 early = _submit(alice, spec, 0, payment);
        uint256 late = _submit(alice, spec, 0, payment);
        uint256 queued = _submit(alice, spec, 0, payment);
        _run(early);
        _run(late);
        _accept(queued);
        vm.startPrank(alice);
        escrow.cancelJob(early);
        escrow.cancelJob(queued);
        vm.stopPrank();
        _operatorCancel(early);
        assertEq(escrow.creditOf(admin), BASE_FEE + 2 * VCPU_HOUR, "cancelled at once: one hour started");
        _operatorCancel(queued);
        assertEq(escrow.creditOf(alice), 2 * payment - BASE_FEE - 2 * VCPU_HOUR, "never ran: refunded in full");
        vm.warp(START_TIME + 3 hours + 59 minutes); // past its three hours, before its deadline
        vm.prank(alice);
        escrow.cancelJob(late);
        _operatorCancel(late);
        assertEq(escrow.creditOf(admin), 2 * BASE_FEE + 2 * VCPU_HOUR + 3 * 2 * VCPU_HOUR, "at most its hours");
        assertEq(escrow.creditOf(alice), 2 * payment - BASE_FEE - 2 * VCPU_HOUR, "nothing back for a full run");
        _assertSolvent(_accounts(admin, alice));
    }

    /// @dev Prices are those in force at submission: a later `setPricing` changes nothing for the job.
    function test_finding8_pricesAtSubmitApply() public {
        RecordingConsumer consumer = new RecordingConsumer(escrow);
        uint256 ran = _submit(alice, Specs.sized(2, 5), 0, _price(Specs.sized(2, 5), 0));
        uint256 failed = _submitFrom(consumer, 100_000);
        uint256 paidRan = escrow.getJob(ran).payment;
        uint256 paidFailed = escrow.getJob(failed).payment;
        _run(ran);
        vm.prank(admin);
        escrow.setPricing(IJobEscrow.Pricing({baseFee: 1 ether, pricePerVcpuHour: 1 ether, pricePerCallbackGas: 1e12}));
        vm.warp(START_TIME + 1 hours + 1);
        vm.prank(alice);
        escrow.cancelJob(ran);
        _operatorCancel(ran);
        _fail(failed);
        assertEq(escrow.creditOf(alice), paidRan - BASE_FEE - 2 * 2 * VCPU_HOUR, "the hours at the old price");
        assertEq(escrow.creditOf(address(consumer)), paidFailed - CALLBACK_GAS_PRICE * 100_000, "the old fee");
        _assertSolvent(_accounts(address(consumer), admin));
    }

    // ------------------------------------------------------------------ finding 9: overpayment

    /// @dev Before the fix the whole `msg.value` was escrowed and an overpayment went to the treasury on
    /// completion. Now only the quote is escrowed; the rest is credited back to the requester at once.
    function test_finding9_overpaymentIsCreditedBackAtSubmit() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        uint256 price = _price(spec, 0);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobSubmitted(1, alice, keccak256(abi.encode(spec)), price, _deadlineFor(spec), spec, 0);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(alice, 0.5 ether);
        uint256 jobId = _submit(alice, spec, 0, price + 0.5 ether);
        assertEq(escrow.getJob(jobId).payment, price, "only the quote is escrowed");
        assertEq(escrow.creditOf(alice), 0.5 ether, "the rest is the requester's at once");
        _complete(jobId);
        assertEq(escrow.creditOf(admin), price, "the treasury earns the quote, not the overpayment");
        _assertSolvent(_accounts(alice, admin));
    }

    // ------------------------------------------------------------------ helpers

    function _submitFrom(Requester consumer, uint32 callbackGasLimit) internal returns (uint256) {
        uint256 price = _price(Specs.typical(), callbackGasLimit);
        return consumer.submit{value: price}(Specs.typical(), callbackGasLimit);
    }

    /// @dev The reason of the UpdateSkipped log for `jobId` in `logs` (0 when there is none).
    function _skipReason(Vm.Log[] memory logs, uint256 jobId) internal view returns (bytes4 reason) {
        for (uint256 i; i < logs.length; ++i) {
            Vm.Log memory entry = logs[i];
            if (
                entry.emitter == address(escrow) && entry.topics[0] == IJobEscrow.UpdateSkipped.selector
                    && entry.topics[1] == bytes32(jobId)
            ) {
                (, reason) = abi.decode(entry.data, (uint8, bytes4));
            }
        }
    }
}
