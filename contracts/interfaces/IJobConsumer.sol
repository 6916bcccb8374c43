// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IJobEscrow} from "./IJobEscrow.sol";

/// @title IJobConsumer
/// @notice Implemented by contracts that submit jobs to a JobEscrow and want to hear how they ended.
interface IJobConsumer {
    /// @notice Called by the escrow when a job this contract submitted with a non-zero callback gas limit
    /// becomes Completed, Failed or (when reclaimed) Expired. It runs with exactly that much gas; if it
    /// reverts or runs out of gas, the escrow emits `CallbackFailed` and the status stands.
    /// @param jobId the escrow's job id
    /// @param status the terminal status
    /// @param resultHash the result hash for Completed, else zero
    function onJobFinished(uint256 jobId, IJobEscrow.Status status, bytes32 resultHash) external;
}
