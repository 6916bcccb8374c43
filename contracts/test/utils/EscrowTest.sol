// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {JobEscrow} from "../../JobEscrow.sol";
import {IJobEscrow} from "../../interfaces/IJobEscrow.sol";
import {Assertions} from "./Assertions.sol";
import {Specs} from "./Specs.sol";
import {Vm} from "./Vm.sol";

/// @title EscrowTest
/// @notice Base of the JobEscrow test contracts: a fresh escrow with an admin (also the treasury at
/// first), one operator and funded requesters, plus helpers that drive a job to any status.
abstract contract EscrowTest is Assertions {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    bytes32 internal constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    bytes32 internal constant DEFAULT_ADMIN_ROLE = 0x00;
    bytes32 internal constant RESULT_HASH = keccak256("output manifest");
    string internal constant RESULT_URI = "https://results.example.org/job/1/";
    string internal constant REMOTE_ID = "ce-remote-0001";
    uint32 internal constant GRACE = 1 hours;
    uint256 internal constant START_TIME = 1_700_000_000;

    address internal admin = _named("admin");
    address internal operator = _named("operator");
    address internal alice = _named("alice");
    address internal bob = _named("bob");
    address internal stranger = _named("stranger");

    JobEscrow internal escrow;

    function setUp() public virtual {
        vm.warp(START_TIME);
        escrow = new JobEscrow(admin);
        vm.prank(admin);
        escrow.grantRole(OPERATOR_ROLE, operator);
        vm.deal(alice, 1000 ether);
        vm.deal(bob, 1000 ether);
        vm.deal(stranger, 1000 ether);
        vm.label(address(escrow), "JobEscrow");
    }

    // ------------------------------------------------------------------ submitting

    /// @dev The quote computed from the pricing formula (independently of `escrow.quote`).
    function _price(IJobEscrow.JobSpec memory spec, uint32 callbackGasLimit) internal view returns (uint256) {
        IJobEscrow.Pricing memory p = escrow.pricing();
        return uint256(p.baseFee) + uint256(p.pricePerVcpuHour) * spec.specs.vcpus * spec.maxHours
            + uint256(p.pricePerCallbackGas) * callbackGasLimit;
    }

    function _submit(address requester, IJobEscrow.JobSpec memory spec, uint32 callbackGasLimit, uint256 value)
        internal
        returns (uint256 jobId)
    {
        vm.prank(requester);
        jobId = escrow.submitJob{value: value}(spec, callbackGasLimit);
    }

    /// @dev The typical job from `requester`, paying exactly the quote.
    function _submitTypical(address requester) internal returns (uint256) {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        return _submit(requester, spec, 0, _price(spec, 0));
    }

    function _deadlineFor(IJobEscrow.JobSpec memory spec) internal view returns (uint64) {
        return uint64(block.timestamp + uint256(spec.maxHours) * 3600 + escrow.deadlineGrace());
    }

    // ------------------------------------------------------------------ operator moves

    function _accept(uint256 jobId) internal {
        vm.prank(operator);
        escrow.acceptJob(jobId, REMOTE_ID);
    }

    function _run(uint256 jobId) internal {
        vm.prank(operator);
        escrow.markRunning(jobId);
    }

    function _complete(uint256 jobId) internal {
        vm.prank(operator);
        escrow.completeJob(jobId, RESULT_HASH, RESULT_URI);
    }

    function _fail(uint256 jobId) internal {
        vm.prank(operator);
        escrow.failJob(jobId, "remote job failed");
    }

    function _update(uint256 jobId, IJobEscrow.Status status, bytes32 resultHash, string memory data)
        internal
        pure
        returns (IJobEscrow.Update memory)
    {
        return IJobEscrow.Update({jobId: jobId, status: uint8(status), resultHash: resultHash, data: data});
    }

    /// @dev The operator ends a cancel-requested job as Cancelled (only `applyUpdates` writes Cancelled).
    function _operatorCancel(uint256 jobId) internal {
        IJobEscrow.Update[] memory updates = new IJobEscrow.Update[](1);
        updates[0] = _update(jobId, IJobEscrow.Status.Cancelled, 0, "cancelled remotely");
        vm.prank(operator);
        escrow.applyUpdates(updates);
    }

    /// @dev A typical job from alice, driven to `status` along the usual path (Cancelled: accepted, cancel
    /// requested, cancelled by the operator; Expired: reclaimed after its deadline, then the clock is set back
    /// to START_TIME so later jobs and writes happen before their own deadlines).
    function _jobIn(IJobEscrow.Status status) internal returns (uint256 jobId) {
        jobId = _submitTypical(alice);
        if (status == IJobEscrow.Status.Submitted) return jobId;
        if (status == IJobEscrow.Status.Cancelled) {
            _accept(jobId);
            vm.prank(alice);
            escrow.cancelJob(jobId);
            _operatorCancel(jobId);
            return jobId;
        }
        if (status == IJobEscrow.Status.Expired) {
            vm.warp(escrow.getJob(jobId).deadline + 1);
            escrow.reclaimExpired(jobId);
            vm.warp(START_TIME);
            return jobId;
        }
        _accept(jobId);
        if (status == IJobEscrow.Status.Accepted) return jobId;
        _run(jobId);
        if (status == IJobEscrow.Status.Running) return jobId;
        if (status == IJobEscrow.Status.Completed) _complete(jobId);
        else if (status == IJobEscrow.Status.Failed) _fail(jobId);
        else revert("_jobIn: unsupported status");
    }

    // ------------------------------------------------------------------ checks

    function _assertJob(uint256 jobId, address requester, IJobEscrow.Status status, uint256 payment, bytes32 resultHash)
        internal
        view
    {
        IJobEscrow.Job memory job = escrow.getJob(jobId);
        assertEq(job.requester, requester, "job.requester");
        assertEq(job.status, status, "job.status");
        assertEq(job.payment, payment, "job.payment");
        assertEq(job.resultHash, resultHash, "job.resultHash");
    }

    /// @dev The contract's accounting invariant over the jobs submitted so far and `accounts` (duplicates
    /// counted once); `accounts` must include everyone who holds a credit.
    function _assertSolvent(address[] memory accounts) internal view {
        uint256 escrowed;
        uint256 next = escrow.nextJobId();
        for (uint256 id = 1; id < next; ++id) {
            escrowed += escrow.getJob(id).payment;
        }
        uint256 credited;
        for (uint256 i; i < accounts.length; ++i) {
            bool seen;
            for (uint256 j; j < i; ++j) {
                if (accounts[j] == accounts[i]) seen = true;
            }
            if (!seen) credited += escrow.creditOf(accounts[i]);
        }
        assertEq(address(escrow).balance, escrowed + credited, "balance == escrowed + credited");
    }

    function _accounts(address a, address b) internal view returns (address[] memory accounts) {
        accounts = new address[](5);
        accounts[0] = alice;
        accounts[1] = bob;
        accounts[2] = escrow.treasury();
        accounts[3] = a;
        accounts[4] = b;
    }

    /// @dev Number of logs in `logs` from the escrow with topic0 `topic`.
    function _count(Vm.Log[] memory logs, bytes32 topic) internal view returns (uint256 n) {
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(escrow) && logs[i].topics.length > 0 && logs[i].topics[0] == topic) ++n;
        }
    }

    function _err(bytes4 selector, uint256 jobId) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(selector, jobId);
    }

    /// @dev `x` mapped into [min, max] (for fuzz inputs).
    function _bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        if (max < min) revert("_bound: max < min");
        if (min == 0 && max == type(uint256).max) return x;
        return min + x % (max - min + 1);
    }

    function _named(string memory name) internal pure returns (address) {
        return address(uint160(uint256(keccak256(bytes(name)))));
    }
}
