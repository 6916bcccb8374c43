// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IJobConsumer} from "../../interfaces/IJobConsumer.sol";
import {IJobEscrow} from "../../interfaces/IJobEscrow.sol";

/// @title Requester
/// @notice A contract that submits jobs to the escrow (so it is their requester and callback target).
/// Deliberately unguarded: only tests call it.
abstract contract Requester {
    IJobEscrow public immutable escrow;

    constructor(IJobEscrow escrow_) {
        escrow = escrow_;
    }

    function submit(IJobEscrow.JobSpec calldata spec, uint32 callbackGasLimit)
        external
        payable
        returns (uint256 jobId)
    {
        return escrow.submitJob{value: msg.value}(spec, callbackGasLimit);
    }

    function cancel(uint256 jobId) external {
        escrow.cancelJob(jobId);
    }

    function withdraw() external {
        escrow.withdraw();
    }

    receive() external payable virtual {}
}

/// @notice A well-behaved consumer that records each callback and the gas it was given.
contract RecordingConsumer is Requester, IJobConsumer {
    uint256 public calls;
    uint256 public lastJobId;
    IJobEscrow.Status public lastStatus;
    bytes32 public lastResultHash;
    /// @notice `gasleft()` at the first statement of the last callback.
    uint256 public gasAtEntry;
    address public lastCaller;

    constructor(IJobEscrow escrow_) Requester(escrow_) {}

    function onJobFinished(uint256 jobId, IJobEscrow.Status status, bytes32 resultHash) external {
        uint256 gasAtStart = gasleft();
        gasAtEntry = gasAtStart;
        ++calls;
        lastJobId = jobId;
        lastStatus = status;
        lastResultHash = resultHash;
        lastCaller = msg.sender;
    }
}

/// @notice The cheapest possible well-behaved consumer: accepts the callback and does nothing. The
/// baseline for the griefing measurements.
contract NoopConsumer is Requester, IJobConsumer {
    constructor(IJobEscrow escrow_) Requester(escrow_) {}

    function onJobFinished(uint256, IJobEscrow.Status, bytes32) external pure {}
}

/// @notice A consumer whose callback always reverts with a short custom error.
contract RevertingConsumer is Requester, IJobConsumer {
    error NotToday(uint256 jobId);

    constructor(IJobEscrow escrow_) Requester(escrow_) {}

    function onJobFinished(uint256 jobId, IJobEscrow.Status, bytes32) external pure {
        revert NotToday(jobId);
    }
}

/// @notice Griefer: its callback loops forever, burning every unit of gas it is given.
contract GasBurnerConsumer is Requester, IJobConsumer {
    constructor(IJobEscrow escrow_) Requester(escrow_) {}

    function onJobFinished(uint256, IJobEscrow.Status, bytes32) external pure {
        for (;;) {}
    }
}

/// @notice Griefer from the security review (issue 9, finding 2): cheap when simulated (`eth_call` and
/// `eth_estimateGas` run at gas price 0), it burns every unit of its gas once mined.
contract SimulationAwareBurnerConsumer is Requester, IJobConsumer {
    uint256 public calls;

    constructor(IJobEscrow escrow_) Requester(escrow_) {}

    function onJobFinished(uint256, IJobEscrow.Status, bytes32) external {
        ++calls;
        if (tx.gasprice != 0) {
            for (;;) {}
        }
    }
}

/// @notice Griefer: its callback reverts with `revertSize` bytes of revert data (1 MB in the griefing
/// test, which cannot even be paid for within the callback gas, and a smaller size that can, so that
/// a caller copying the return data would pay for it).
contract BigRevertConsumer is Requester, IJobConsumer {
    uint256 public immutable revertSize;

    constructor(IJobEscrow escrow_, uint256 revertSize_) Requester(escrow_) {
        revertSize = revertSize_;
    }

    function onJobFinished(uint256, IJobEscrow.Status, bytes32) external view {
        uint256 size = revertSize;
        // Assembly: the only way to revert with an arbitrary-size buffer of (zeroed) memory.
        assembly ("memory-safe") {
            revert(0, size)
        }
    }
}

/// @notice Griefer: its callback tries to re-enter the escrow everywhere, then burns all its gas.
contract ReenteringGriefConsumer is Requester, IJobConsumer {
    uint256 public immutable otherJobId;

    constructor(IJobEscrow escrow_, uint256 otherJobId_) Requester(escrow_) {
        otherJobId = otherJobId_;
    }

    function onJobFinished(uint256 jobId, IJobEscrow.Status, bytes32) external {
        try escrow.withdraw() {} catch {}
        try escrow.cancelJob(jobId) {} catch {}
        try escrow.reclaimExpired(otherJobId) {} catch {}
        try escrow.completeJob(otherJobId, keccak256("grief"), "") {} catch {}
        for (;;) {}
    }
}

/// @notice A reentrancy attacker, as requester (its `receive` runs inside `withdraw`) and as consumer (its
/// `onJobFinished` runs inside the operator's write or `reclaimExpired`). Each configured step re-enters
/// the escrow once; the outcome (success, or the revert data) is recorded and the attack never reverts, so
/// the outer call goes through and the tests can check that nothing was gained.
contract ReentrancyAttacker is Requester, IJobConsumer {
    enum Action {
        Withdraw,
        CancelJob,
        ReclaimExpired,
        CompleteJob,
        FailJob,
        ApplyUpdates
    }

    struct Step {
        Action action;
        uint256 jobId;
    }

    struct Attempt {
        Action action;
        uint256 jobId;
        bool ok;
        bytes err;
    }

    Step[] private _onReceive;
    Step[] private _onCallback;
    Attempt[] private _attempts;
    /// @notice Total wei received through `receive`.
    uint256 public received;
    uint256 public callbacks;

    constructor(IJobEscrow escrow_) Requester(escrow_) {}

    /// @notice Queue a re-entry to run (once) when the escrow sends ether.
    function onReceive(Action action, uint256 jobId) external {
        _onReceive.push(Step(action, jobId));
    }

    /// @notice Queue a re-entry to run (once) from the next `onJobFinished`.
    function onCallback(Action action, uint256 jobId) external {
        _onCallback.push(Step(action, jobId));
    }

    function attempts() external view returns (Attempt[] memory) {
        return _attempts;
    }

    receive() external payable override {
        received += msg.value;
        Step[] memory steps = _onReceive;
        delete _onReceive;
        _run(steps);
    }

    function onJobFinished(uint256, IJobEscrow.Status, bytes32) external {
        ++callbacks;
        Step[] memory steps = _onCallback;
        delete _onCallback;
        _run(steps);
    }

    function _run(Step[] memory steps) private {
        for (uint256 i; i < steps.length; ++i) {
            (bool ok, bytes memory err) = _attack(steps[i]);
            _attempts.push(Attempt(steps[i].action, steps[i].jobId, ok, err));
        }
    }

    function _attack(Step memory step) private returns (bool ok, bytes memory err) {
        if (step.action == Action.Withdraw) {
            try escrow.withdraw() {
                ok = true;
            } catch (bytes memory reason) {
                err = reason;
            }
        } else if (step.action == Action.CancelJob) {
            try escrow.cancelJob(step.jobId) {
                ok = true;
            } catch (bytes memory reason) {
                err = reason;
            }
        } else if (step.action == Action.ReclaimExpired) {
            try escrow.reclaimExpired(step.jobId) {
                ok = true;
            } catch (bytes memory reason) {
                err = reason;
            }
        } else if (step.action == Action.CompleteJob) {
            try escrow.completeJob(step.jobId, keccak256("attacker"), "") {
                ok = true;
            } catch (bytes memory reason) {
                err = reason;
            }
        } else if (step.action == Action.FailJob) {
            try escrow.failJob(step.jobId, "attacker") {
                ok = true;
            } catch (bytes memory reason) {
                err = reason;
            }
        } else {
            IJobEscrow.Update[] memory updates = new IJobEscrow.Update[](1);
            updates[0] = IJobEscrow.Update(step.jobId, uint8(IJobEscrow.Status.Completed), keccak256("attacker"), "");
            try escrow.applyUpdates(updates) {
                ok = true;
            } catch (bytes memory reason) {
                err = reason;
            }
        }
    }
}

/// @notice Makes operator calls and measures their gas with gasleft() around the call, from inside a contract:
/// the measurement is then the same whether forge runs each test call inline or as its own transaction
/// (`--isolate`, which `--gas-report` turns on). Needs OPERATOR_ROLE for the operator calls.
contract GasMeter {
    function completeJob(IJobEscrow escrow, uint256 jobId, bytes32 resultHash, string calldata resultURI)
        external
        returns (uint256 used)
    {
        uint256 before = gasleft();
        escrow.completeJob(jobId, resultHash, resultURI);
        used = before - gasleft();
    }

    function applyUpdates(IJobEscrow escrow, IJobEscrow.Update[] calldata updates) external returns (uint256 used) {
        uint256 before = gasleft();
        escrow.applyUpdates(updates);
        used = before - gasleft();
    }

    /// @notice Calls `target` with exactly `gasLimit` gas; returns the outcome and the gas it used.
    function callWithGas(address target, uint256 gasLimit, bytes calldata data)
        external
        returns (bool ok, bytes memory ret, uint256 used)
    {
        uint256 before = gasleft();
        (ok, ret) = target.call{gas: gasLimit}(data);
        used = before - gasleft();
    }
}
