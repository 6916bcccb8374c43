// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";
import {IJobEscrow} from "../../interfaces/IJobEscrow.sol";

/// @title Assertions
/// @notice Minimal assert helpers (no forge-std here): each reverts with a message naming what was checked
/// and both values, which forge prints as the failure reason.
abstract contract Assertions {
    function assertTrue(bool condition, string memory what) internal pure {
        if (!condition) revert(string.concat("assertion failed: ", what));
    }

    function assertEq(uint256 actual, uint256 expected, string memory what) internal pure {
        if (actual != expected) {
            revert(_mismatch(what, Strings.toString(actual), Strings.toString(expected)));
        }
    }

    function assertEq(address actual, address expected, string memory what) internal pure {
        if (actual != expected) {
            revert(_mismatch(what, Strings.toHexString(actual), Strings.toHexString(expected)));
        }
    }

    function assertEq(bytes32 actual, bytes32 expected, string memory what) internal pure {
        if (actual != expected) {
            revert(
                _mismatch(what, Strings.toHexString(uint256(actual), 32), Strings.toHexString(uint256(expected), 32))
            );
        }
    }

    function assertEq(bool actual, bool expected, string memory what) internal pure {
        if (actual != expected) revert(_mismatch(what, actual ? "true" : "false", expected ? "true" : "false"));
    }

    function assertEq(bytes memory actual, bytes memory expected, string memory what) internal pure {
        if (keccak256(actual) != keccak256(expected)) {
            revert(string.concat("assertion failed: ", what, ": bytes differ"));
        }
    }

    function assertEq(IJobEscrow.Status actual, IJobEscrow.Status expected, string memory what) internal pure {
        if (actual != expected) {
            revert(_mismatch(what, Strings.toString(uint8(actual)), Strings.toString(uint8(expected))));
        }
    }

    function assertLe(uint256 actual, uint256 bound, string memory what) internal pure {
        if (actual > bound) revert(_compare(what, actual, " > ", bound));
    }

    function assertGe(uint256 actual, uint256 bound, string memory what) internal pure {
        if (actual < bound) revert(_compare(what, actual, " < ", bound));
    }

    function assertLt(uint256 actual, uint256 bound, string memory what) internal pure {
        if (actual >= bound) revert(_compare(what, actual, " >= ", bound));
    }

    function _mismatch(string memory what, string memory actual, string memory expected)
        private
        pure
        returns (string memory)
    {
        return string.concat("assertion failed: ", what, ": got ", actual, ", want ", expected);
    }

    function _compare(string memory what, uint256 actual, string memory op, uint256 bound)
        private
        pure
        returns (string memory)
    {
        return string.concat("assertion failed: ", what, ": ", Strings.toString(actual), op, Strings.toString(bound));
    }
}
