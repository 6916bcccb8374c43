// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IJobConsumer} from "../interfaces/IJobConsumer.sol";
import {IJobEscrow} from "../interfaces/IJobEscrow.sol";

/// @title ExampleConsumer
/// @notice A minimal contract that buys compute through a JobEscrow and records each result in one
/// storage slot when the escrow calls it back. Copy it as a starting point.
contract ExampleConsumer is IJobConsumer {
    /// @notice The escrow this consumer submits to and accepts callbacks from.
    IJobEscrow public immutable escrow;
    address public immutable owner;

    /// @notice Result hash of each Completed job; for Failed/Expired jobs `bytes32(uint256(status))`.
    mapping(uint256 jobId => bytes32) public results;

    error NotEscrow(address caller);
    error NotOwner(address caller);
    error RefundTransferFailed(address to, uint256 amount);

    constructor(IJobEscrow escrow_) {
        escrow = escrow_;
        owner = msg.sender;
    }

    /// @notice Submits `spec` to the escrow, paying `msg.value`, with a callback of `callbackGasLimit` gas.
    /// Anything above the quote is credited back to this contract (see `withdrawRefunds`).
    /// @return jobId the escrow's id for the job
    function submit(IJobEscrow.JobSpec calldata spec, uint32 callbackGasLimit)
        external
        payable
        returns (uint256 jobId)
    {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        jobId = escrow.submitJob{value: msg.value}(spec, callbackGasLimit);
    }

    /// @notice Cancels a job this consumer submitted.
    function cancel(uint256 jobId) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        escrow.cancelJob(jobId);
    }

    /// @inheritdoc IJobConsumer
    function onJobFinished(uint256 jobId, IJobEscrow.Status status, bytes32 resultHash) external {
        if (msg.sender != address(escrow)) revert NotEscrow(msg.sender);
        results[jobId] = status == IJobEscrow.Status.Completed ? resultHash : bytes32(uint256(status));
    }

    /// @notice Pulls refunds and overpayments credited to this contract by the escrow and sends them to the
    /// owner.
    function withdrawRefunds() external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        escrow.withdraw();
        uint256 amount = address(this).balance;
        (bool ok,) = owner.call{value: amount}("");
        if (!ok) revert RefundTransferFailed(owner, amount);
    }

    receive() external payable {}
}
