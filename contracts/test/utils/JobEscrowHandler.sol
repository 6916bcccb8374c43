// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {JobEscrow} from "../../JobEscrow.sol";
import {IJobEscrow} from "../../interfaces/IJobEscrow.sol";
import {ReenteringGriefConsumer, RecordingConsumer, ReentrancyAttacker, Requester} from "./Consumers.sol";
import {Specs} from "./Specs.sol";
import {Vm} from "./Vm.sol";

/// @title JobEscrowHandler
/// @notice Drives a JobEscrow for the invariant test: several requesters (three EOAs, a well-behaved
/// consumer, a griefing consumer and a reentrancy attacker) submit random in-bound specs with random
/// overpayments, cancel, reclaim and withdraw; the operator accepts, runs, completes, fails, cancels and
/// sends batches with random (often invalid) items; the admin changes the prices; time moves. No action
/// reverts (each escrow call is wrapped), so every call of a run counts.
/// @dev Ghost accounting works from what the handler knows (what it paid in, the prices it set, when it saw a
/// job start running, what each account received) and from status changes it observes after each action,
/// never from the escrow's own balance sheet:
/// - a job's `paid` is the quote; what the handler sent above it is credited to the requester at once;
/// - a job is settled when its status first becomes terminal; then its `paid` leaves the escrowed total and
///   is split by the money rules, at the prices of its submission: Completed all to the treasury; Failed
///   the callback fee (when it asked for a callback) to the treasury, the rest to the requester; Cancelled
///   after it was seen Running the base fee and the hours started to the treasury, the rest to the
///   requester; otherwise all to the requester;
/// - a withdrawal must pay an account exactly its ghost credit, which then drops to zero.
/// (Logs are not used: forge's recordLogs keeps logs of reverted frames, such as a failed callback's.)
contract JobEscrowHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    JobEscrow public immutable escrow;
    address public immutable admin;
    address public immutable operator;
    ReentrancyAttacker public immutable attacker;

    address[] internal _actors;

    // ghost state
    uint256 public ghostDeposited;
    uint256 public ghostWithdrawn;
    uint256 public ghostEscrowed;
    uint256 public ghostCredited;
    uint256 public jobCount;
    mapping(uint256 jobId => uint256) public paid;
    mapping(uint256 jobId => uint256) public settledCount;
    mapping(uint256 jobId => IJobEscrow.Status) public lastStatus;
    mapping(address account => uint256) public ghostCredit;
    mapping(uint256 jobId => Terms) internal _terms;

    /// @dev A job's fee terms as the handler priced it at submission, and when it was seen Running.
    struct Terms {
        uint256 baseFee;
        uint256 hourPrice;
        uint256 maxHours;
        uint256 callbackFee;
        uint256 runningSince;
    }

    // violations spotted inside actions (the invariants assert they never happen)
    uint256 public statusRegressions;
    uint256 public wrongWithdrawals;
    uint256 public wrongSubmissions;

    // counters of actions that changed something (visible in a failing run's trace)
    uint256 public submits;
    uint256 public settlements;
    uint256 public withdrawals;

    constructor(JobEscrow escrow_, address admin_, address operator_) {
        escrow = escrow_;
        admin = admin_;
        operator = operator_;
        _actors.push(address(uint160(uint256(keccak256("actor 1")))));
        _actors.push(address(uint160(uint256(keccak256("actor 2")))));
        _actors.push(address(uint160(uint256(keccak256("actor 3")))));
        _actors.push(address(new RecordingConsumer(escrow_)));
        _actors.push(address(new ReenteringGriefConsumer(escrow_, 1)));
        attacker = new ReentrancyAttacker(escrow_);
        _actors.push(address(attacker));
        vm.deal(address(this), 1e9 ether);
    }

    /// @notice Every account that can hold a credit: the actors and the treasury.
    function accounts() external view returns (address[] memory list) {
        list = new address[](_actors.length + 1);
        for (uint256 i; i < _actors.length; ++i) {
            list[i] = _actors[i];
        }
        list[_actors.length] = escrow.treasury();
    }

    // ------------------------------------------------------------------ requester actions

    function submit(uint256 actorSeed, uint256 sizeSeed, uint256 callbackSeed, uint256 overpay, uint8 files) external {
        uint256 a = actorSeed % _actors.length;
        address actor = _actors[a];
        IJobEscrow.JobSpec memory spec = Specs.withInputFiles(files % 4);
        // Casts below are of values already reduced below the target type's maximum.
        // forge-lint: disable-next-line(unsafe-typecast)
        spec.specs.vcpus = uint16(1 + sizeSeed % 64);
        spec.maxHours = uint16(1 + (sizeSeed >> 8) % 12);
        spec.specs.ram = uint32((sizeSeed >> 16) % 262_145);
        spec.specs.disk = uint32((sizeSeed >> 48) % 1_048_577);
        uint32 cb = _callbackGas(a, callbackSeed);
        IJobEscrow.Pricing memory p = escrow.pricing();
        uint256 price = p.baseFee + uint256(p.pricePerVcpuHour) * spec.specs.vcpus * spec.maxHours
            + uint256(p.pricePerCallbackGas) * cb;
        uint256 value = price + (overpay % 4 == 0 ? 0 : overpay % 1 ether);
        if (actor == address(attacker)) _queueCallbackAttack(callbackSeed);
        uint256 jobId;
        if (a < 3) {
            vm.deal(actor, actor.balance + value);
            vm.prank(actor);
            try escrow.submitJob{value: value}(spec, cb) returns (uint256 id) {
                jobId = id;
            } catch {
                ++wrongSubmissions; // an in-bound spec paying at least the quote is never refused
            }
        } else {
            try Requester(payable(actor)).submit{value: value}(spec, cb) returns (uint256 id) {
                jobId = id;
            } catch {
                ++wrongSubmissions;
            }
        }
        if (jobId != 0) {
            if (jobId != jobCount + 1 || escrow.getJob(jobId).payment != price) ++wrongSubmissions;
            jobCount = jobId;
            paid[jobId] = price;
            _terms[jobId] = Terms({
                baseFee: p.baseFee,
                hourPrice: uint256(p.pricePerVcpuHour) * spec.specs.vcpus,
                maxHours: spec.maxHours,
                callbackFee: uint256(p.pricePerCallbackGas) * cb,
                runningSince: 0
            });
            lastStatus[jobId] = IJobEscrow.Status.Submitted;
            ghostDeposited += value;
            ghostEscrowed += price;
            ghostCredit[actor] += value - price; // the overpayment, credited back at once
            ghostCredited += value - price;
            ++submits;
        }
        _sync();
    }

    function cancel(uint256 jobSeed, uint256 callerSeed) external {
        uint256 jobId = _pickJob(jobSeed);
        address requester = escrow.getJob(jobId).requester;
        // Mostly the requester; now and then someone else (NotRequester).
        address caller =
            callerSeed % 8 == 0 || requester == address(0) ? _actors[callerSeed % _actors.length] : requester;
        if (_isEoa(caller)) {
            vm.prank(caller);
            try escrow.cancelJob(jobId) {} catch {}
        } else {
            try Requester(payable(caller)).cancel(jobId) {} catch {}
        }
        _sync();
    }

    function reclaim(uint256 jobSeed, uint256 callerSeed) external {
        uint256 jobId = _pickJob(jobSeed);
        vm.prank(_actors[callerSeed % _actors.length]);
        try escrow.reclaimExpired(jobId) {} catch {}
        _sync();
    }

    function withdraw(uint256 accountSeed, uint256 attackSeed) external {
        address[] memory list = this.accounts();
        uint256 i = accountSeed % list.length;
        // Usually someone who is owed something (a real payout); now and then anyone (NothingToWithdraw).
        if (attackSeed % 4 != 0) {
            for (uint256 k; k < list.length && ghostCredit[list[i]] == 0; ++k) {
                i = (i + 1) % list.length;
            }
        }
        address account = list[i];
        if (account == address(attacker)) {
            attacker.onReceive(ReentrancyAttacker.Action.Withdraw, 0);
            attacker.onReceive(ReentrancyAttacker.Action.CancelJob, _pickJob(attackSeed));
        }
        uint256 owed = ghostCredit[account];
        uint256 before = account.balance;
        bool ok;
        if (_isEoa(account)) {
            vm.prank(account);
            try escrow.withdraw() {
                ok = true;
            } catch {}
        } else {
            try Requester(payable(account)).withdraw() {
                ok = true;
            } catch {}
        }
        if (ok) {
            uint256 received = account.balance - before;
            if (received != owed || owed == 0) ++wrongWithdrawals;
            ghostCredit[account] = 0;
            ghostCredited -= owed;
            ghostWithdrawn += received;
            ++withdrawals;
        } else if (owed != 0 && account != address(attacker)) {
            // Only the attacker's receive could make a withdrawal of a real credit fail; it never reverts.
            ++wrongWithdrawals;
        }
        _sync();
    }

    function warp(uint256 secondsSeed) external {
        vm.warp(block.timestamp + secondsSeed % 6 hours);
    }

    /// @notice The admin changes the prices; open jobs keep the prices of their submission.
    function reprice(uint256 seed) external {
        // Casts below are of values already reduced below the target type's maximum.
        IJobEscrow.Pricing memory p = IJobEscrow.Pricing({
            // forge-lint: disable-next-line(unsafe-typecast)
            baseFee: uint64(seed % 0.001 ether),
            // forge-lint: disable-next-line(unsafe-typecast)
            pricePerVcpuHour: uint64((seed >> 64) % 0.001 ether),
            // forge-lint: disable-next-line(unsafe-typecast)
            pricePerCallbackGas: uint48((seed >> 128) % 10 gwei)
        });
        vm.prank(admin);
        escrow.setPricing(p);
    }

    // ------------------------------------------------------------------ operator actions

    function accept(uint256 jobSeed) external {
        vm.prank(operator);
        try escrow.acceptJob(_pickJob(jobSeed), "remote") {} catch {}
        _sync();
    }

    function markRunning(uint256 jobSeed) external {
        vm.prank(operator);
        try escrow.markRunning(_pickJob(jobSeed)) {} catch {}
        _sync();
    }

    function complete(uint256 jobSeed, bytes32 resultHash) external {
        if (uint256(resultHash) % 16 != 0) resultHash = keccak256(abi.encode(resultHash)); // zero now and then
        else resultHash = 0;
        vm.prank(operator);
        try escrow.completeJob(_pickJob(jobSeed), resultHash, "ipfs://result") {} catch {}
        _sync();
    }

    function fail(uint256 jobSeed) external {
        vm.prank(operator);
        try escrow.failJob(_pickJob(jobSeed), "failed") {} catch {}
        _sync();
    }

    function operatorCancel(uint256 jobSeed) external {
        IJobEscrow.Update[] memory updates = new IJobEscrow.Update[](1);
        updates[0] = IJobEscrow.Update(_pickJob(jobSeed), uint8(IJobEscrow.Status.Cancelled), 0, "cancelled");
        vm.prank(operator);
        try escrow.applyUpdates(updates) {} catch {}
        _sync();
    }

    /// @notice A batch of 1 to 5 random items: known and unknown jobs, any status value (0..8, 255),
    /// sometimes a zero result hash.
    function batch(uint256 seed, uint8 size) external {
        uint256 n = 1 + size % 5;
        IJobEscrow.Update[] memory updates = new IJobEscrow.Update[](n);
        for (uint256 i; i < n; ++i) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            uint256 jobId = r % 10 == 0 ? jobCount + 1 + (r >> 8) % 3 : _pickJob(r >> 16);
            uint256 s = (r >> 32) % 12;
            // forge-lint: disable-next-line(unsafe-typecast)
            uint8 status = s == 9 ? 255 : s >= 10 ? uint8(2 + (r >> 40) % 5) : uint8(s);
            bytes32 resultHash = (r >> 48) % 5 == 0 ? bytes32(0) : keccak256(abi.encode(r));
            updates[i] = IJobEscrow.Update(jobId, status, resultHash, "batch");
            // The ghost books learn when a job starts running by seeing it Running after an action: within one
            // batch, an item that runs a job is not followed by one that cancels it.
            for (uint256 k; k < i && status == uint8(IJobEscrow.Status.Cancelled); ++k) {
                if (updates[k].jobId == jobId && updates[k].status == uint8(IJobEscrow.Status.Running)) {
                    updates[i].status = uint8(IJobEscrow.Status.Completed);
                }
            }
        }
        vm.prank(operator);
        try escrow.applyUpdates(updates) {} catch {}
        _sync();
    }

    // ------------------------------------------------------------------ internals

    /// @dev Settles the ghost books for every job whose status became terminal during the action, and
    /// counts any status that moved backwards (or left a terminal status).
    function _sync() internal {
        address treasury = escrow.treasury();
        for (uint256 id = 1; id <= jobCount; ++id) {
            IJobEscrow.Job memory job = escrow.getJob(id);
            IJobEscrow.Status before = lastStatus[id];
            if (job.status == before) continue;
            if (job.status < before || before >= IJobEscrow.Status.Completed) ++statusRegressions;
            if (job.status == IJobEscrow.Status.Running) _terms[id].runningSince = block.timestamp;
            if (job.status >= IJobEscrow.Status.Completed) {
                ++settledCount[id];
                ++settlements;
                uint256 earned = _earned(id, job.status, job.callbackGasLimit != 0);
                ghostEscrowed -= paid[id];
                ghostCredit[treasury] += earned;
                ghostCredit[job.requester] += paid[id] - earned;
                ghostCredited += paid[id];
            }
            lastStatus[id] = job.status;
        }
    }

    /// @dev The treasury's share of job `id` settled as `status`, by the money rules.
    function _earned(uint256 id, IJobEscrow.Status status, bool callback) internal view returns (uint256) {
        Terms memory t = _terms[id];
        if (status == IJobEscrow.Status.Completed) return paid[id];
        if (status == IJobEscrow.Status.Failed) return callback ? t.callbackFee : 0;
        if (status == IJobEscrow.Status.Cancelled && t.runningSince != 0) {
            uint256 started = (block.timestamp - t.runningSince) / 1 hours + 1;
            return t.baseFee + t.hourPrice * (started < t.maxHours ? started : t.maxHours);
        }
        return 0;
    }

    function _pickJob(uint256 seed) internal view returns (uint256) {
        if (jobCount == 0) return 1 + seed % 2; // unknown ids
        return 1 + seed % jobCount;
    }

    function _callbackGas(uint256 actorIndex, uint256 seed) internal pure returns (uint32) {
        // forge-lint: disable-next-line(unsafe-typecast)
        if (actorIndex < 3) return seed % 3 == 0 ? uint32(seed % 100_000) : 0; // EOAs: CallbackFailed
        if (actorIndex == 5) return 1_000_000; // the attacker needs room for its re-entries
        // forge-lint: disable-next-line(unsafe-typecast)
        return uint32(20_000 + seed % 200_000);
    }

    function _queueCallbackAttack(uint256 seed) internal {
        attacker.onCallback(ReentrancyAttacker.Action.Withdraw, 0);
        attacker.onCallback(ReentrancyAttacker.Action.CancelJob, _pickJob(seed));
        attacker.onCallback(ReentrancyAttacker.Action.ReclaimExpired, _pickJob(seed >> 8));
    }

    function _isEoa(address account) internal view returns (bool) {
        return account.code.length == 0;
    }
}
