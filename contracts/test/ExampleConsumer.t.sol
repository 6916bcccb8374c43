// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ExampleConsumer} from "../examples/ExampleConsumer.sol";
import {IJobEscrow} from "../interfaces/IJobEscrow.sol";
import {EscrowTest} from "./utils/EscrowTest.sol";
import {Specs} from "./utils/Specs.sol";
import {Vm} from "./utils/Vm.sol";

/// @notice The example consumer end to end: its owner submits through it with a callback, the operator
/// drives the job, and the callback records the outcome in `results`.
contract ExampleConsumerTest is EscrowTest {
    /// @dev Enough for the example's callback (one fresh storage slot, ~25k) with room to spare.
    uint32 internal constant CALLBACK_GAS = 50_000;

    ExampleConsumer internal consumer;
    uint256 internal price;

    function setUp() public override {
        super.setUp();
        vm.prank(alice);
        consumer = new ExampleConsumer(escrow);
        price = _price(Specs.typical(), CALLBACK_GAS);
    }

    function test_example_submitCompleteAndRecordResult() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobSubmitted(
            1, address(consumer), keccak256(abi.encode(spec)), price, _deadlineFor(spec), spec, CALLBACK_GAS
        );
        uint256 jobId = _submitViaConsumer();
        IJobEscrow.Job memory job = escrow.getJob(jobId);
        assertEq(job.requester, address(consumer), "the consumer is the requester");
        assertEq(job.callbackGasLimit, CALLBACK_GAS, "callback asked for");

        _accept(jobId);
        _run(jobId);
        assertEq(consumer.results(jobId), bytes32(0), "nothing recorded yet");
        vm.recordLogs();
        _complete(jobId);
        Vm.Log[] memory logs = vm.getRecordedLogs();

        assertEq(_count(logs, IJobEscrow.CallbackFailed.selector), 0, "callback succeeded");
        assertEq(consumer.results(jobId), RESULT_HASH, "result hash recorded");
        _assertJob(jobId, address(consumer), IJobEscrow.Status.Completed, 0, RESULT_HASH);
        assertEq(escrow.creditOf(admin), price, "treasury earned the payment");
    }

    function test_example_failureRecordedAndRefundReachesOwner() public {
        uint256 jobId = _submitViaConsumer();
        _fail(jobId);
        assertEq(consumer.results(jobId), bytes32(uint256(IJobEscrow.Status.Failed)), "Failed recorded");
        // The operator ran the callback: its fee is kept, the rest refunded.
        uint256 refund = price - escrow.pricing().pricePerCallbackGas * uint256(CALLBACK_GAS);
        assertEq(escrow.creditOf(address(consumer)), refund, "refund credited to the consumer");
        uint256 before = alice.balance;
        vm.prank(alice);
        consumer.withdrawRefunds();
        assertEq(alice.balance - before, refund, "owner receives the refund");
        assertEq(address(consumer).balance, 0, "consumer keeps nothing");
    }

    function test_example_expiryRecorded() public {
        uint256 jobId = _submitViaConsumer();
        _accept(jobId);
        vm.warp(escrow.getJob(jobId).deadline + 1);
        escrow.reclaimExpired(jobId);
        assertEq(consumer.results(jobId), bytes32(uint256(IJobEscrow.Status.Expired)), "Expired recorded");
        assertEq(escrow.creditOf(address(consumer)), price, "refund");
    }

    function test_example_cancelThroughConsumer() public {
        uint256 jobId = _submitViaConsumer();
        vm.prank(alice);
        consumer.cancel(jobId);
        _assertJob(jobId, address(consumer), IJobEscrow.Status.Cancelled, 0, 0);
        assertEq(consumer.results(jobId), bytes32(0), "no callback for Cancelled");
        uint256 before = alice.balance;
        vm.prank(alice);
        consumer.withdrawRefunds();
        assertEq(alice.balance - before, price, "refund to owner");
    }

    function test_example_onlyOwnerAndOnlyEscrow() public {
        uint256 jobId = _submitViaConsumer();
        IJobEscrow.JobSpec memory spec = Specs.typical();
        bytes memory notOwner = abi.encodeWithSelector(ExampleConsumer.NotOwner.selector, bob);
        vm.startPrank(bob);
        vm.expectRevert(notOwner);
        consumer.submit{value: price}(spec, CALLBACK_GAS);
        vm.expectRevert(notOwner);
        consumer.cancel(jobId);
        vm.expectRevert(notOwner);
        consumer.withdrawRefunds();
        vm.expectRevert(abi.encodeWithSelector(ExampleConsumer.NotEscrow.selector, bob));
        consumer.onJobFinished(jobId, IJobEscrow.Status.Completed, keccak256("forged"));
        vm.stopPrank();
        assertEq(consumer.results(jobId), bytes32(0), "no forged result");
    }

    function _submitViaConsumer() internal returns (uint256 jobId) {
        vm.prank(alice);
        jobId = consumer.submit{value: price}(Specs.typical(), CALLBACK_GAS);
    }
}
