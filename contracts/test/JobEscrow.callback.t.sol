// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IJobEscrow} from "../interfaces/IJobEscrow.sol";
import {
    BigRevertConsumer,
    GasBurnerConsumer,
    GasMeter,
    NoopConsumer,
    RecordingConsumer,
    ReenteringGriefConsumer,
    Requester,
    RevertingConsumer
} from "./utils/Consumers.sol";
import {EscrowTest} from "./utils/EscrowTest.sol";
import {Specs} from "./utils/Specs.sol";
import {Vm} from "./utils/Vm.sol";

/// @notice Consumer callbacks: who is called, when, with what and with exactly how much gas; the
/// InsufficientGasForCallback guard; and griefing consumers, which cannot block a status write nor cost the
/// operator more than their own gas limit plus a fixed overhead.
contract JobEscrowCallbackTest is EscrowTest {
    uint32 internal constant CALLBACK_GAS = 500_000;

    /// @dev Gas `completeJob` (and a one-item `applyUpdates`) uses beyond the consumer's callback gas limit,
    /// whatever the consumer does. Measured by GasMeter (gasleft() around the call, from a contract), with
    /// the treasury's credit going from zero to non-zero:
    ///                                          fresh transaction       inline (default `forge test`)
    ///                                          (`--isolate`, and so    (vm.cool makes the escrow's slots
    ///                                          `--gas-report`)         cold, but accounts stay warm)
    ///   no callback                            46,341                  43,841
    ///   no-op consumer                         50,055                  45,055
    ///   griefer burning all, completeJob       CALLBACK_GAS + 50,870   CALLBACK_GAS + 45,870
    ///   the same, one-item applyUpdates        CALLBACK_GAS + 51,911   CALLBACK_GAS + 46,911
    /// The fresh-transaction figures are what an operator pays on chain, less the 21,000 intrinsic gas and
    /// the calldata, plus nothing: they already include the cold CALL into the escrow (2,600) and the cold
    /// EXTCODESIZE of the consumer (2,600). The 1 MB revert and the re-entering griefer cost exactly what
    /// the burner costs. The bound leaves ~1,100 gas of slack over the largest.
    uint256 internal constant CALLBACK_OVERHEAD = 53_000;

    /// @dev A griefer costs the operator at most this much more than a well-behaved (no-op) consumer, on top
    /// of its gas limit: the CallbackFailed event and nothing else (measured: 815, in both modes).
    uint256 internal constant GRIEF_EXTRA = 1_500;

    /// @dev gasleft() at a callback's first statement is its limit minus the dispatch (measured: 356).
    uint256 internal constant ENTRY_SLACK = 1_000;

    /// @dev A second operator that measures gas from inside a contract (see GasMeter).
    GasMeter internal meter;

    function setUp() public override {
        super.setUp();
        vm.deal(address(this), 1000 ether);
        meter = new GasMeter();
        vm.prank(admin);
        escrow.grantRole(OPERATOR_ROLE, address(meter));
    }

    // ------------------------------------------------------------------ who is called, with what

    function test_callback_onCompletion() public {
        RecordingConsumer consumer = new RecordingConsumer(escrow);
        uint256 jobId = _submitFrom(consumer, CALLBACK_GAS);
        _accept(jobId);
        _run(jobId);
        assertEq(consumer.calls(), 0, "no callback before a terminal status");
        _complete(jobId);
        assertEq(consumer.calls(), 1, "called once");
        assertEq(consumer.lastJobId(), jobId, "jobId");
        assertEq(consumer.lastStatus(), IJobEscrow.Status.Completed, "status");
        assertEq(consumer.lastResultHash(), RESULT_HASH, "resultHash");
        assertEq(consumer.lastCaller(), address(escrow), "called by the escrow");
        // It ran with exactly its limit: what is left at its first statement is the limit minus dispatch.
        assertLe(consumer.gasAtEntry(), CALLBACK_GAS, "no more than the limit");
        assertGe(consumer.gasAtEntry(), CALLBACK_GAS - ENTRY_SLACK, "the whole limit");
    }

    function test_callback_onFailure() public {
        RecordingConsumer consumer = new RecordingConsumer(escrow);
        uint256 jobId = _submitFrom(consumer, CALLBACK_GAS);
        _fail(jobId);
        assertEq(consumer.calls(), 1, "called once");
        assertEq(consumer.lastStatus(), IJobEscrow.Status.Failed, "status");
        assertEq(consumer.lastResultHash(), bytes32(0), "no result hash");
        uint256 fee = escrow.pricing().pricePerCallbackGas * uint256(CALLBACK_GAS);
        assertEq(escrow.creditOf(address(consumer)), _price(Specs.typical(), CALLBACK_GAS) - fee, "refund less the fee");
        assertEq(escrow.creditOf(admin), fee, "the callback fee to the treasury");
    }

    function test_callback_onReclaim() public {
        RecordingConsumer consumer = new RecordingConsumer(escrow);
        uint256 jobId = _submitFrom(consumer, CALLBACK_GAS);
        _accept(jobId);
        vm.warp(escrow.getJob(jobId).deadline + 1);
        vm.prank(stranger);
        escrow.reclaimExpired(jobId);
        assertEq(consumer.calls(), 1, "called once");
        assertEq(consumer.lastStatus(), IJobEscrow.Status.Expired, "status");
        assertEq(consumer.lastResultHash(), bytes32(0), "no result hash");
        assertGe(consumer.gasAtEntry(), CALLBACK_GAS - ENTRY_SLACK, "the whole limit");
    }

    function test_callback_notOnCancelOrIntermediateSteps() public {
        RecordingConsumer consumer = new RecordingConsumer(escrow);
        uint256 a = _submitFrom(consumer, CALLBACK_GAS);
        consumer.cancel(a);
        uint256 b = _submitFrom(consumer, CALLBACK_GAS);
        _accept(b);
        _run(b);
        consumer.cancel(b);
        _operatorCancel(b);
        assertEq(consumer.calls(), 0, "Cancelled is not called back");
        // b ran: the base fee and its first started hour (2 vcpus) are kept; the callback fee is refunded.
        IJobEscrow.Pricing memory p = escrow.pricing();
        uint256 kept = p.baseFee + 2 * uint256(p.pricePerVcpuHour);
        assertEq(escrow.creditOf(address(consumer)), 2 * _price(Specs.typical(), CALLBACK_GAS) - kept, "refunds");
    }

    function test_callback_notWhenGasLimitIsZero() public {
        RecordingConsumer consumer = new RecordingConsumer(escrow);
        uint256 jobId = _submitFrom(consumer, 0);
        vm.recordLogs();
        _complete(jobId);
        assertEq(consumer.calls(), 0, "no callback asked for");
        assertEq(_count(vm.getRecordedLogs(), IJobEscrow.CallbackFailed.selector), 0, "no CallbackFailed");
    }

    function test_callback_toAnAccountWithoutCode_isReportedFailed() public {
        uint256 price = _price(Specs.typical(), CALLBACK_GAS);
        uint256 jobId = _submit(alice, Specs.typical(), CALLBACK_GAS, price);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobCompleted(jobId, RESULT_HASH, RESULT_URI);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.CallbackFailed(jobId);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(admin, price);
        _complete(jobId);
        _assertJob(jobId, alice, IJobEscrow.Status.Completed, 0, RESULT_HASH);
    }

    function test_callback_revertingConsumer_doesNotBlockTheStatus() public {
        RevertingConsumer consumer = new RevertingConsumer(escrow);
        uint256 done = _submitFrom(consumer, CALLBACK_GAS);
        uint256 failed = _submitFrom(consumer, CALLBACK_GAS);
        uint256 expired = _submitFrom(consumer, CALLBACK_GAS);
        uint256 price = _price(Specs.typical(), CALLBACK_GAS);
        uint256 fee = escrow.pricing().pricePerCallbackGas * uint256(CALLBACK_GAS);

        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobCompleted(done, RESULT_HASH, RESULT_URI);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.CallbackFailed(done);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(admin, price);
        _complete(done);

        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobFailed(failed, "remote job failed");
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(address(consumer), price - fee);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.CallbackFailed(failed);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(admin, fee);
        _fail(failed);

        vm.warp(escrow.getJob(expired).deadline + 1);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobExpired(expired);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(address(consumer), price);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.CallbackFailed(expired);
        escrow.reclaimExpired(expired);

        _assertJob(done, address(consumer), IJobEscrow.Status.Completed, 0, RESULT_HASH);
        _assertJob(failed, address(consumer), IJobEscrow.Status.Failed, 0, 0);
        _assertJob(expired, address(consumer), IJobEscrow.Status.Expired, 0, 0);
        assertEq(escrow.creditOf(address(consumer)), 2 * price - fee, "refunds (the failure's less its callback fee)");
        assertEq(escrow.creditOf(admin), price + fee, "earnings");
    }

    // ------------------------------------------------------------------ InsufficientGasForCallback

    function test_insufficientGas_completeJob_reverts() public {
        RecordingConsumer consumer = new RecordingConsumer(escrow);
        uint256 jobId = _submitFrom(consumer, 1_000_000);
        _run(jobId);
        bytes memory call = abi.encodeCall(IJobEscrow.completeJob, (jobId, RESULT_HASH, RESULT_URI));
        _assertInsufficientGas(call, jobId, 1_000_000, 600_000);
        _assertJob(jobId, address(consumer), IJobEscrow.Status.Running, _price(Specs.typical(), 1_000_000), 0);
        assertEq(consumer.calls(), 0, "not called");
        // With enough gas the same call goes through.
        (bool ok,,) = meter.callWithGas(address(escrow), 1_100_000, call);
        assertTrue(ok, "enough gas");
        assertEq(consumer.calls(), 1, "called");
        assertGe(consumer.gasAtEntry(), 1_000_000 - ENTRY_SLACK, "full limit");
    }

    function test_insufficientGas_failJob_reverts() public {
        RecordingConsumer consumer = new RecordingConsumer(escrow);
        uint256 jobId = _submitFrom(consumer, 2_000_000);
        _assertInsufficientGas(abi.encodeCall(IJobEscrow.failJob, (jobId, "x")), jobId, 2_000_000, 1_500_000);
        _assertJob(jobId, address(consumer), IJobEscrow.Status.Submitted, _price(Specs.typical(), 2_000_000), 0);
        assertEq(escrow.creditOf(address(consumer)), 0, "no refund either");
    }

    function test_insufficientGas_reclaimExpired_reverts() public {
        RecordingConsumer consumer = new RecordingConsumer(escrow);
        uint256 jobId = _submitFrom(consumer, 300_000);
        vm.warp(escrow.getJob(jobId).deadline + 1);
        _assertInsufficientGas(abi.encodeCall(IJobEscrow.reclaimExpired, (jobId)), jobId, 300_000, 200_000);
        _assertJob(jobId, address(consumer), IJobEscrow.Status.Submitted, _price(Specs.typical(), 300_000), 0);
    }

    /// @dev In a batch the item is skipped instead (one consumer must never revert a batch): the other
    /// items are applied, the starved job is left as it was for the operator to send again.
    function test_insufficientGas_applyUpdates_skipsTheItem() public {
        RecordingConsumer consumer = new RecordingConsumer(escrow);
        uint256 other = _submitTypical(alice);
        uint256 jobId = _submitFrom(consumer, 1_000_000);
        IJobEscrow.Update[] memory u = new IJobEscrow.Update[](2);
        u[0] = _update(jobId, IJobEscrow.Status.Completed, RESULT_HASH, RESULT_URI);
        u[1] = _update(other, IJobEscrow.Status.Accepted, 0, REMOTE_ID);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.UpdateSkipped(
            jobId, uint8(IJobEscrow.Status.Completed), IJobEscrow.InsufficientGasForCallback.selector
        );
        (bool ok,,) = meter.callWithGas(address(escrow), 700_000, abi.encodeCall(IJobEscrow.applyUpdates, (u)));
        assertTrue(ok, "the batch goes through");
        _assertJob(other, alice, IJobEscrow.Status.Accepted, 0.0003 ether, 0);
        _assertJob(jobId, address(consumer), IJobEscrow.Status.Submitted, _price(Specs.typical(), 1_000_000), 0);
        assertEq(consumer.calls(), 0, "not called with less than its limit");
    }

    /// @dev Whatever gas a batch carries, its callback item either runs with the whole limit or is skipped
    /// (or the whole transaction runs out of gas): it never reverts with InsufficientGasForCallback. Checks
    /// the settlement reserve for the costliest item: a Failed one whose refund opens the requester's credit
    /// slot, with a long reason.
    function testFuzz_batch_callbackItemGetsItsGasOrIsSkipped(uint256 gasSeed, uint256 reasonLength, bool fail) public {
        uint32 cb = 300_000;
        RecordingConsumer consumer = new RecordingConsumer(escrow);
        uint256 jobId = _submitFrom(consumer, cb);
        _run(jobId);
        vm.cool(address(escrow));
        vm.cool(address(consumer));
        IJobEscrow.Update[] memory u = new IJobEscrow.Update[](1);
        u[0] = fail
            ? _update(jobId, IJobEscrow.Status.Failed, 0, Specs.filled(_bound(reasonLength, 0, 3000)))
            : _update(jobId, IJobEscrow.Status.Completed, RESULT_HASH, Specs.filled(_bound(reasonLength, 0, 3000)));
        uint256 gasLimit = _bound(gasSeed, 300_000, 420_000);
        (bool ok, bytes memory ret,) =
            meter.callWithGas(address(escrow), gasLimit, abi.encodeCall(IJobEscrow.applyUpdates, (u)));
        IJobEscrow.Status status = escrow.getJob(jobId).status;
        if (!ok) {
            assertEq(ret.length, 0, "only out of gas, never InsufficientGasForCallback");
            assertEq(status, IJobEscrow.Status.Running, "nothing written");
        } else if (status == IJobEscrow.Status.Running) {
            assertEq(consumer.calls(), 0, "skipped: not called");
        } else {
            assertEq(consumer.calls(), 1, "applied: called");
            assertGe(consumer.gasAtEntry(), cb - ENTRY_SLACK, "with its whole limit");
        }
    }

    /// @dev Whatever gas the operator's transaction carries, a completion either gives the callback its
    /// whole limit or does not happen at all (InsufficientGasForCallback, or out of gas).
    function testFuzz_callback_fullGasOrNoCompletion(uint256 gasSeed, bool burner) public {
        uint32 cb = 300_000;
        Requester consumer =
            burner ? Requester(new GasBurnerConsumer(escrow)) : Requester(new RecordingConsumer(escrow));
        uint256 jobId = _submitFrom(consumer, cb);
        _run(jobId);
        vm.cool(address(escrow));
        vm.cool(address(consumer));
        uint256 gasLimit = _bound(gasSeed, 280_000, 400_000);
        (bool ok, bytes memory ret, uint256 used) = meter.callWithGas(
            address(escrow), gasLimit, abi.encodeCall(IJobEscrow.completeJob, (jobId, RESULT_HASH, RESULT_URI))
        );
        if (ok) {
            assertEq(escrow.getJob(jobId).status, IJobEscrow.Status.Completed, "completed");
            if (burner) {
                assertGe(used, cb, "the burner consumed its whole limit");
            } else {
                assertGe(RecordingConsumer(payable(address(consumer))).gasAtEntry(), cb - ENTRY_SLACK, "full limit");
            }
        } else {
            assertEq(escrow.getJob(jobId).status, IJobEscrow.Status.Running, "nothing written");
            assertTrue(
                // forge-lint: disable-next-line(unsafe-typecast)
                ret.length == 0 || bytes4(ret) == IJobEscrow.InsufficientGasForCallback.selector,
                "out of gas or InsufficientGasForCallback"
            );
        }
    }

    // ------------------------------------------------------------------ griefing consumers

    function test_grief_noopBaseline() public {
        uint256 used = _measureCompletion(new NoopConsumer(escrow), false, false);
        assertLe(used, CALLBACK_OVERHEAD, "a well-behaved consumer stays within the overhead");
    }

    function test_grief_infiniteLoop() public {
        uint256 baseline = _measureCompletion(new NoopConsumer(escrow), false, false);
        uint256 used = _measureCompletion(new GasBurnerConsumer(escrow), true, false);
        _assertGriefBounded(used, baseline);
    }

    function test_grief_infiniteLoop_inABatch() public {
        uint256 baseline = _measureCompletion(new NoopConsumer(escrow), false, true);
        uint256 used = _measureCompletion(new GasBurnerConsumer(escrow), true, true);
        _assertGriefBounded(used, baseline);
    }

    /// @dev revert(0, 1 MB): the memory for it costs more than any allowed callback gas, so the callee runs
    /// out of gas; either way the escrow never pays for the data.
    function test_grief_oneMegabyteRevertReason() public {
        uint256 baseline = _measureCompletion(new NoopConsumer(escrow), false, false);
        uint256 used = _measureCompletion(new BigRevertConsumer(escrow, 0x100000), true, false);
        _assertGriefBounded(used, baseline);
    }

    function test_grief_oneMegabyteRevertReason_inABatch() public {
        uint256 baseline = _measureCompletion(new NoopConsumer(escrow), false, true);
        uint256 used = _measureCompletion(new BigRevertConsumer(escrow, 0x100000), true, true);
        _assertGriefBounded(used, baseline);
    }

    /// @dev A 64 KB revert reason the callee can afford: the escrow's cost is the callee's memory and not a
    /// byte more, so the return data is not copied (copying would add ~20k: the same memory again plus 3 gas
    /// a word).
    function test_grief_affordableBigRevertReason_isNotCopied() public {
        uint256 size = 0x10000;
        uint256 baseline = _measureCompletion(new NoopConsumer(escrow), false, false);
        uint256 used = _measureCompletion(new BigRevertConsumer(escrow, size), true, false);
        uint256 words = size / 32;
        uint256 calleeMemory = 3 * words + words * words / 512;
        assertLe(used, baseline + calleeMemory + GRIEF_EXTRA, "only the callee's own memory is paid");
        assertLe(used, CALLBACK_GAS + CALLBACK_OVERHEAD, "within limit + overhead");
    }

    function test_grief_reentryThenInfiniteLoop() public {
        uint256 baseline = _measureCompletion(new NoopConsumer(escrow), false, false);
        uint256 victim = _submitTypical(bob);
        vm.warp(escrow.getJob(victim).deadline + 1);
        ReenteringGriefConsumer griefer = new ReenteringGriefConsumer(escrow, victim);
        uint256 used = _measureCompletion(griefer, true, false);
        _assertGriefBounded(used, baseline);
        // None of its re-entries stuck: the expired job is still reclaimable, nothing was withdrawn.
        _assertJob(victim, bob, IJobEscrow.Status.Submitted, 0.0003 ether, 0);
        escrow.reclaimExpired(victim);
        _assertJob(victim, bob, IJobEscrow.Status.Expired, 0, 0);
    }

    function test_grief_batchGoesOnPastGriefers() public {
        GasBurnerConsumer burner = new GasBurnerConsumer(escrow);
        BigRevertConsumer reverter = new BigRevertConsumer(escrow, 0x100000);
        RecordingConsumer good = new RecordingConsumer(escrow);
        uint256 a = _submitFrom(burner, 200_000);
        uint256 b = _submitFrom(reverter, 200_000);
        uint256 c = _submitFrom(good, 200_000);
        IJobEscrow.Update[] memory u = new IJobEscrow.Update[](3);
        u[0] = _update(a, IJobEscrow.Status.Completed, RESULT_HASH, RESULT_URI);
        u[1] = _update(b, IJobEscrow.Status.Failed, 0, "bad");
        u[2] = _update(c, IJobEscrow.Status.Completed, RESULT_HASH, RESULT_URI);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.CallbackFailed(a);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.CallbackFailed(b);
        vm.recordLogs();
        vm.prank(operator);
        escrow.applyUpdates(u);
        assertEq(_count(vm.getRecordedLogs(), IJobEscrow.CallbackFailed.selector), 2, "two failed callbacks");
        assertEq(good.calls(), 1, "the good consumer was still called");
        _assertJob(a, address(burner), IJobEscrow.Status.Completed, 0, RESULT_HASH);
        _assertJob(b, address(reverter), IJobEscrow.Status.Failed, 0, 0);
        _assertJob(c, address(good), IJobEscrow.Status.Completed, 0, RESULT_HASH);
    }

    // ------------------------------------------------------------------ regression

    /// @dev Regression: IJobConsumer documents `resultHash` as "the result hash for Completed, else zero".
    /// applyUpdates once passed a Failed item's stray `resultHash` through to the consumer.
    function test_batchFailedItem_callbackGetsZeroResultHash() public {
        RecordingConsumer consumer = new RecordingConsumer(escrow);
        uint256 jobId = _submitFrom(consumer, CALLBACK_GAS);
        IJobEscrow.Update[] memory u = new IJobEscrow.Update[](1);
        u[0] = _update(jobId, IJobEscrow.Status.Failed, keccak256("stale hash"), "exit code 1");
        vm.prank(operator);
        escrow.applyUpdates(u);
        assertEq(consumer.lastStatus(), IJobEscrow.Status.Failed, "status");
        assertEq(consumer.lastResultHash(), bytes32(0), "resultHash is zero unless Completed (IJobConsumer)");
    }

    // ------------------------------------------------------------------ helpers

    function _submitFrom(Requester consumer, uint32 callbackGasLimit) internal returns (uint256) {
        return consumer.submit{value: _price(Specs.typical(), callbackGasLimit)}(Specs.typical(), callbackGasLimit);
    }

    /// @dev Submits from `consumer` with CALLBACK_GAS, runs it, then measures the gas of the completing call
    /// (completeJob, or a one-item applyUpdates, sent by the GasMeter operator) and checks the events and
    /// the written status.
    function _measureCompletion(Requester consumer, bool expectFailure, bool batch) internal returns (uint256 used) {
        uint256 jobId = _submitFrom(consumer, CALLBACK_GAS);
        _accept(jobId);
        _run(jobId);
        // Measure as a transaction of its own would run: the escrow's slots and the consumer's account cold.
        vm.cool(address(escrow));
        vm.cool(address(consumer));
        vm.recordLogs();
        if (batch) {
            IJobEscrow.Update[] memory u = new IJobEscrow.Update[](1);
            u[0] = _update(jobId, IJobEscrow.Status.Completed, RESULT_HASH, RESULT_URI);
            used = meter.applyUpdates(escrow, u);
        } else {
            used = meter.completeJob(escrow, jobId, RESULT_HASH, RESULT_URI);
        }
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(_count(logs, IJobEscrow.CallbackFailed.selector), expectFailure ? 1 : 0, "CallbackFailed");
        assertEq(_count(logs, IJobEscrow.JobCompleted.selector), 1, "JobCompleted");
        _assertJob(jobId, address(consumer), IJobEscrow.Status.Completed, 0, RESULT_HASH);
        // Fresh state for the next measurement: same warm/cold conditions as the first.
        vm.prank(admin);
        escrow.withdraw();
    }

    function _assertGriefBounded(uint256 used, uint256 baseline) internal pure {
        assertGe(used, CALLBACK_GAS, "the griefer did get its whole limit");
        assertLe(used, CALLBACK_GAS + CALLBACK_OVERHEAD, "gas used <= callback limit + fixed overhead");
        assertLe(used, CALLBACK_GAS + baseline + GRIEF_EXTRA, "at most the limit more than a well-behaved consumer");
    }

    /// @dev Calls the escrow as an operator (the GasMeter) with `gasLimit` gas and checks it
    /// reverts with InsufficientGasForCallback(jobId, required, available): `required` exactly as the
    /// contract documents it (limit + limit/63 + 5,000) and `available` below it and below `gasLimit`
    /// (its exact value is whatever the call had left at the check).
    function _assertInsufficientGas(bytes memory call, uint256 jobId, uint256 callbackGasLimit, uint256 gasLimit)
        internal
    {
        (bool ok, bytes memory ret,) = meter.callWithGas(address(escrow), gasLimit, call);
        assertTrue(!ok, "reverts");
        assertEq(ret.length, 4 + 3 * 32, "error with three arguments");
        // The selector is the first four bytes: truncating is the point.
        // forge-lint: disable-next-line(unsafe-typecast)
        assertEq(bytes32(bytes4(ret)), bytes32(IJobEscrow.InsufficientGasForCallback.selector), "selector");
        (uint256 id, uint256 required, uint256 available) = abi.decode(_args(ret), (uint256, uint256, uint256));
        assertEq(id, jobId, "jobId");
        assertEq(required, callbackGasLimit + callbackGasLimit / 63 + 5_000, "required");
        assertLt(available, required, "available < required");
        assertLt(available, gasLimit, "available < the call's gas");
        assertGe(available, gasLimit - 50_000, "available is what the call had left");
        assertEq(
            ret,
            abi.encodeWithSelector(IJobEscrow.InsufficientGasForCallback.selector, jobId, required, available),
            "exact encoding"
        );
    }

    /// @dev `ret` without its 4-byte selector.
    function _args(bytes memory ret) internal pure returns (bytes memory args) {
        args = new bytes(ret.length - 4);
        for (uint256 i; i < args.length; ++i) {
            args[i] = ret[i + 4];
        }
    }
}
