// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title Vm
/// @notice The few forge cheatcodes these tests use. There is no forge-std on this machine (the npm copy
/// does not build and no other can be downloaded), so they are declared here with forge's own signatures.
interface Vm {
    /// @notice A log captured by `recordLogs`.
    struct Log {
        bytes32[] topics;
        bytes data;
        address emitter;
    }

    function prank(address sender) external;
    function startPrank(address sender) external;
    function stopPrank() external;
    function deal(address account, uint256 newBalance) external;
    function warp(uint256 newTimestamp) external;
    function expectRevert(bytes calldata revertData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData, address emitter) external;
    function assume(bool condition) external pure;
    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory logs);
    function label(address account, string calldata newLabel) external;
    /// @notice Marks `target` cold again (account and storage), as at the start of a new transaction.
    function cool(address target) external;
    /// @notice Sets `tx.gasprice` for the rest of the test.
    function txGasPrice(uint256 newGasPrice) external;
}
