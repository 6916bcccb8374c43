// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IJobConsumer} from "./interfaces/IJobConsumer.sol";
import {IJobEscrow} from "./interfaces/IJobEscrow.sol";

/// @title JobEscrow
/// @notice Escrow for Charity Engine compute jobs bought on-chain. A requester submits a job spec with
/// payment; the spec lives only in the `JobSubmitted` event, storage keeps what the lifecycle needs
/// (two slots a job). The operator (the ce-bridge) moves the job forward. Money rules (prices are those in
/// force at submission): only the quote is escrowed, an overpayment is credited back at once; a completed
/// job's payment goes to the treasury; a failed one is refunded less the callback fee when its callback
/// ran; a job cancelled once Running pays the base fee and the vCPU-hour price of each hour started since
/// `JobRunning`, the rest is refunded; a job cancelled before Running, or expired, is refunded in full.
/// Money only leaves through `withdraw` (pull payments).
/// @dev Invariant: `address(this).balance == sum of escrowed payments + sum of credits`.
contract JobEscrow is IJobEscrow, AccessControl, ReentrancyGuardTransient, Pausable {
    /// @notice The role of the bridge's operator keys; granted with `grantRole`.
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");

    /// @dev Gas kept back around the callback's CALL: the cold account access (2,600) plus the few
    /// opcodes between the check and the call. Same approach as Chainlink's `_callWithExactGas`.
    uint256 private constant _GAS_FOR_CALL_EXACT_CHECK = 5_000;

    /// @dev Gas an item of `applyUpdates` may spend between its callback-gas check and the callback's CALL:
    /// the job's two slot writes (up to 2,900 + 20,000), the requester's credit in a new slot (22,100) and
    /// its event, the status event and the callback's payload, plus `_GAS_PER_DATA_BYTE` for each byte of the
    /// item's data (logged at 8 gas a byte, and copied to memory). Worst case by the gas schedule (a Failed
    /// item opening the requester's credit slot): about 33,000 + 8 a byte;
    /// `testFuzz_batch_callbackItemGetsItsGasOrIsSkipped` checks that the bound holds.
    uint256 private constant _GAS_FOR_SETTLEMENT = 40_000;
    uint256 private constant _GAS_PER_DATA_BYTE = 16;

    /// @dev Hard cap on `maxCallbackGasLimit`. A callback gets its whole limit or the write does not happen,
    /// so a limit near the block gas limit could make a job impossible to settle, even by `reclaimExpired`
    /// (issue 9, finding 7). 2,000,000 gas is under 7% of a 30M-gas block (Ethereum's, and most L2s' blocks
    /// are larger), so a write or a reclaim carrying the largest callback always fits in a block, and the
    /// most a callback can cost the operator is bounded by a fee the requester paid. It also fits the
    /// stored limit's 24 bits.
    uint256 private constant _MAX_CALLBACK_GAS_CAP = 2_000_000;
    /// @dev Hard cap on `maxHours` (a year). With the grace's cap it keeps every deadline, the date after
    /// which a requester can reclaim without the operator, within about 13 months; it also keeps every
    /// quote below 2^96 wei (2^64 * 65,535 vcpus * 8,760 hours < 2^94), the width the payment is stored in.
    uint256 private constant _MAX_HOURS_CAP = 8760;
    /// @dev Hard cap on the deadline grace.
    uint256 private constant _MAX_DEADLINE_GRACE = 30 days;

    /// @dev Two slots a job. Slot 0: requester, status, cancel flag, deadline, callback gas, hours (32 bytes).
    /// Slot 1 (`terms`), while the job is open: the escrowed payment (bits 0-95), the base fee (96-159) and
    /// the price per callback gas (160-207) in force at submission, and when the job started running
    /// (208-247, 0 until `JobRunning`); the result hash once Completed; 0 once otherwise settled. With the
    /// job's vcpus x hours price being `payment - baseFee - pricePerCallbackGas * callbackGasLimit`, that is
    /// every fee term a settlement needs, at the prices of submission, in the slot the payment already used.
    struct StoredJob {
        address requester;
        Status status;
        bool cancelRequested;
        uint40 deadline;
        uint24 callbackGasLimit;
        uint16 maxHours;
        uint256 terms;
    }

    // These five pack into Pausable's `_paused` slot: `submitJob` reads all of them with one SLOAD
    // and writes the counter back (see docs/GAS.md).
    uint40 private _nextJobId;
    uint32 private _deadlineGrace;
    uint64 private _baseFee;
    uint64 private _pricePerVcpuHour;
    uint48 private _pricePerCallbackGas;
    Limits private _limits;
    address private _treasury;
    mapping(uint256 jobId => StoredJob) private _jobs;
    mapping(address account => uint256) private _credits;

    /// @notice Deploys with working defaults for pricing and limits; the treasury starts as `admin`.
    /// @param admin holder of DEFAULT_ADMIN_ROLE (pricing, limits, treasury, pause, roles)
    constructor(address admin) {
        if (admin == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _nextJobId = 1;
        _setTreasury(admin);
        _setPricing(Pricing({baseFee: 0.0001 ether, pricePerVcpuHour: 0.0001 ether, pricePerCallbackGas: 2 gwei}));
        _setLimits(
            Limits({
                maxVcpus: 64,
                maxRam: 262_144,
                maxDisk: 1_048_576,
                maxNetworkDownload: 1_048_576,
                maxNetworkUpload: 1_048_576,
                maxHours: 168,
                maxAppLength: 256,
                maxCommandLineLength: 4096,
                maxInputFiles: 16,
                maxInputFileLength: 2048,
                maxCallbackGasLimit: 2_000_000
            }),
            1 hours
        );
    }

    // ------------------------------------------------------------------ users

    /// @inheritdoc IJobEscrow
    function submitJob(JobSpec calldata spec, uint32 callbackGasLimit)
        external
        payable
        whenNotPaused
        returns (uint256 jobId)
    {
        (uint256 price, uint256 terms) = _quote(spec, callbackGasLimit);
        if (msg.value < price) revert PaymentTooLow(msg.value, price);
        jobId = _nextJobId;
        // Cannot overflow: 2^40 jobs will never be submitted.
        unchecked {
            // forge-lint: disable-next-line(unsafe-typecast)
            _nextJobId = uint40(jobId + 1);
        }
        uint16 maxHours = spec.maxHours;
        uint64 deadline = uint64(block.timestamp) + uint64(maxHours) * 1 hours + _deadlineGrace;
        StoredJob storage job = _jobs[jobId];
        // Slot 0 in StoredJob's layout: requester, status Submitted, no cancel request, deadline (fits 40
        // bits: now + 65535 hours + 2^32 s of grace is far below 2^40 s), callback gas limit (fits 24 bits:
        // _quote checked it against maxCallbackGasLimit, capped at 2,000,000) and hours.
        uint256 slot0 = uint256(uint160(msg.sender)) | (uint256(uint8(Status.Submitted)) << 160)
            | (uint256(deadline) << 176) | (uint256(callbackGasLimit) << 216) | (uint256(maxHours) << 240);
        // Assembly: one SSTORE for the slot, where the compiler writes a struct member by member (measured
        // with bench/gas.py, together with taking the terms from _quote: 973 gas less per submit).
        // slither-disable-next-line assembly (one SSTORE for the packed slot, measured; layout tested)
        assembly ("memory-safe") {
            sstore(job.slot, slot0)
        }
        job.terms = terms;
        _emitJobSubmitted(jobId, price, deadline, spec, callbackGasLimit);
        if (msg.value != price) _credit(msg.sender, msg.value - price);
    }

    /// @inheritdoc IJobEscrow
    function quote(JobSpec calldata spec, uint32 callbackGasLimit) external view returns (uint256 weiPrice) {
        (weiPrice,) = _quote(spec, callbackGasLimit);
    }

    /// @inheritdoc IJobEscrow
    function getJob(uint256 jobId) external view returns (Job memory job) {
        StoredJob storage stored = _jobs[jobId];
        job.requester = stored.requester;
        job.status = stored.status;
        job.cancelRequested = stored.cancelRequested;
        job.deadline = stored.deadline;
        job.callbackGasLimit = stored.callbackGasLimit;
        if (job.status == Status.Completed) {
            job.resultHash = bytes32(stored.terms);
        } else {
            job.payment = _payment(stored.terms);
        }
    }

    /// @inheritdoc IJobEscrow
    function cancelJob(uint256 jobId) external {
        StoredJob storage job = _jobs[jobId];
        Status status = job.status;
        if (status == Status.None) revert JobNotFound(jobId);
        if (job.requester != msg.sender) revert NotRequester(jobId, msg.sender);
        if (status == Status.Submitted) {
            uint256 payment = _payment(job.terms);
            job.status = Status.Cancelled;
            job.terms = 0;
            emit JobCancelled(jobId);
            _credit(msg.sender, payment);
            return;
        }
        if (status >= Status.Completed) revert InvalidTransition(jobId, status, Status.Cancelled);
        // slither-disable-next-line timestamp (deadlines are hours long: seconds of validator drift do not matter)
        if (block.timestamp > job.deadline) revert DeadlinePassed(jobId, job.deadline);
        if (job.cancelRequested) revert CancelAlreadyRequested(jobId);
        job.cancelRequested = true;
        emit CancelRequested(jobId);
    }

    /// @inheritdoc IJobEscrow
    function reclaimExpired(uint256 jobId) external nonReentrant {
        StoredJob storage job = _jobs[jobId];
        Status status = job.status;
        if (status == Status.None) revert JobNotFound(jobId);
        if (status >= Status.Completed) revert InvalidTransition(jobId, status, Status.Expired);
        // slither-disable-next-line timestamp (deadlines are hours long: seconds of validator drift do not matter)
        if (block.timestamp <= job.deadline) revert JobNotExpired(jobId, job.deadline);
        uint256 payment = _payment(job.terms);
        address requester = job.requester;
        uint256 callbackGasLimit = job.callbackGasLimit;
        job.status = Status.Expired;
        job.terms = 0;
        emit JobExpired(jobId);
        _credit(requester, payment);
        if (callbackGasLimit != 0) _callback(jobId, requester, callbackGasLimit, Status.Expired, 0);
    }

    /// @inheritdoc IJobEscrow
    function withdraw() external nonReentrant {
        uint256 amount = _credits[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        _credits[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    /// @inheritdoc IJobEscrow
    function creditOf(address account) external view returns (uint256) {
        return _credits[account];
    }

    // ------------------------------------------------------------------ operator

    /// @inheritdoc IJobEscrow
    function acceptJob(uint256 jobId, string calldata remoteJobId) external onlyRole(OPERATOR_ROLE) {
        _apply(jobId, uint8(Status.Accepted), 0, remoteJobId, true);
    }

    /// @inheritdoc IJobEscrow
    function markRunning(uint256 jobId) external onlyRole(OPERATOR_ROLE) {
        // An empty calldata string: markRunning carries no data.
        _apply(jobId, uint8(Status.Running), 0, string(msg.data[0:0]), true);
    }

    /// @inheritdoc IJobEscrow
    function completeJob(uint256 jobId, bytes32 resultHash, string calldata resultURI)
        external
        onlyRole(OPERATOR_ROLE)
        nonReentrant
    {
        uint256 earned = _apply(jobId, uint8(Status.Completed), resultHash, resultURI, true);
        _credit(_treasury, earned);
    }

    /// @inheritdoc IJobEscrow
    function failJob(uint256 jobId, string calldata reason) external onlyRole(OPERATOR_ROLE) nonReentrant {
        uint256 earned = _apply(jobId, uint8(Status.Failed), 0, reason, true);
        // slither-disable-next-line timestamp (a sum of wei, tainted by the running charge; no time comparison)
        if (earned != 0) _credit(_treasury, earned);
    }

    /// @inheritdoc IJobEscrow
    /// @dev Earnings of the batch's settled jobs are credited to the treasury once, at the end.
    function applyUpdates(Update[] calldata updates) external onlyRole(OPERATOR_ROLE) nonReentrant {
        uint256 earned = 0;
        uint256 count = updates.length;
        for (uint256 i; i < count; ++i) {
            Update calldata update = updates[i];
            earned += _apply(update.jobId, update.status, update.resultHash, update.data, false);
        }
        // slither-disable-next-line timestamp (a sum of wei, tainted by the running charge; no time comparison)
        if (earned != 0) _credit(_treasury, earned);
    }

    // ------------------------------------------------------------------ admin

    /// @inheritdoc IJobEscrow
    function setPricing(Pricing calldata newPricing) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setPricing(newPricing);
    }

    /// @inheritdoc IJobEscrow
    function setLimits(Limits calldata newLimits, uint32 newDeadlineGrace) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setLimits(newLimits, newDeadlineGrace);
    }

    /// @inheritdoc IJobEscrow
    function setTreasury(address newTreasury) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setTreasury(newTreasury);
    }

    /// @inheritdoc IJobEscrow
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @inheritdoc IJobEscrow
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    /// @inheritdoc IJobEscrow
    function pricing() external view returns (Pricing memory) {
        return Pricing(_baseFee, _pricePerVcpuHour, _pricePerCallbackGas);
    }

    /// @inheritdoc IJobEscrow
    function limits() external view returns (Limits memory) {
        return _limits;
    }

    /// @inheritdoc IJobEscrow
    function deadlineGrace() external view returns (uint32) {
        return _deadlineGrace;
    }

    /// @inheritdoc IJobEscrow
    function treasury() external view returns (address) {
        return _treasury;
    }

    /// @inheritdoc IJobEscrow
    function nextJobId() external view returns (uint256) {
        return _nextJobId;
    }

    /// @inheritdoc AccessControl
    function supportsInterface(bytes4 interfaceId) public view override returns (bool) {
        return interfaceId == type(IJobEscrow).interfaceId || super.supportsInterface(interfaceId);
    }

    // ------------------------------------------------------------------ internals

    /// @dev Emits `JobSubmitted(jobId, msg.sender, keccak256(abi.encode(spec)), payment, deadline, spec,
    /// callbackGasLimit)` from a single ABI encoding of the spec. The event's data is `abi.encode(specHash,
    /// payment, deadline, spec, callbackGasLimit)`: a head of five words, then the spec's tail. Writing 0x20
    /// into the word just before that tail (the callback gas limit's) turns the rest into
    /// `abi.encode(spec)` to hash in place; the word is put back before the log. Measured: 2,509 gas less
    /// per submit than `emit` with a separate `keccak256(abi.encode(spec))` (docs/GAS.md).
    function _emitJobSubmitted(
        uint256 jobId,
        uint256 payment,
        uint64 deadline,
        JobSpec calldata spec,
        uint32 callbackGasLimit
    ) private {
        bytes memory data = abi.encode(bytes32(0), payment, deadline, spec, callbackGasLimit);
        bytes32 topic = JobSubmitted.selector;
        // slither-disable-next-line assembly (the in-place spec hash, measured in docs/GAS.md; see above)
        assembly ("memory-safe") {
            let body := add(data, 0x20)
            let length := mload(data)
            let beforeTail := add(body, 0x80)
            mstore(beforeTail, 0x20)
            let specHash := keccak256(beforeTail, sub(length, 0x80))
            mstore(beforeTail, callbackGasLimit)
            mstore(body, specHash)
            log3(body, length, topic, jobId, caller())
        }
    }

    /// @dev Validates `spec` against the limits and prices it: returns the price and the job's `terms` word
    /// (the price, the base fee and the price per callback gas; see StoredJob).
    // slither-disable-next-line cyclomatic-complexity (one flat check per bound, each with its own error)
    function _quote(JobSpec calldata spec, uint32 callbackGasLimit)
        private
        view
        returns (uint256 price, uint256 terms)
    {
        Limits memory lim = _limits;
        uint256 length = bytes(spec.app).length;
        if (length == 0) revert EmptyApp();
        if (length > lim.maxAppLength) revert AppTooLong(length, lim.maxAppLength);
        length = bytes(spec.commandLine).length;
        if (length == 0) revert EmptyCommandLine();
        if (length > lim.maxCommandLineLength) revert CommandLineTooLong(length, lim.maxCommandLineLength);
        Resources calldata res = spec.specs;
        if (res.vcpus == 0) revert ZeroVcpus();
        if (res.vcpus > lim.maxVcpus) revert VcpusOverLimit(res.vcpus, lim.maxVcpus);
        if (res.ram > lim.maxRam) revert RamOverLimit(res.ram, lim.maxRam);
        if (res.disk > lim.maxDisk) revert DiskOverLimit(res.disk, lim.maxDisk);
        if (res.networkDownload > lim.maxNetworkDownload) {
            revert NetworkDownloadOverLimit(res.networkDownload, lim.maxNetworkDownload);
        }
        if (res.networkUpload > lim.maxNetworkUpload) {
            revert NetworkUploadOverLimit(res.networkUpload, lim.maxNetworkUpload);
        }
        if (spec.maxHours == 0) revert ZeroHours();
        if (spec.maxHours > lim.maxHours) revert HoursOverLimit(spec.maxHours, lim.maxHours);
        uint256 count = spec.inputFiles.length;
        if (count > lim.maxInputFiles) revert TooManyInputFiles(count, lim.maxInputFiles);
        for (uint256 i; i < count; ++i) {
            InputFile calldata file = spec.inputFiles[i];
            uint256 nameLength = bytes(file.filename).length;
            uint256 urlLength = bytes(file.url).length;
            if (nameLength == 0 || urlLength == 0) revert EmptyInputFile(i);
            if (nameLength + urlLength > lim.maxInputFileLength) {
                revert InputFileTooLong(i, nameLength + urlLength, lim.maxInputFileLength);
            }
        }
        if (callbackGasLimit > lim.maxCallbackGasLimit) {
            revert CallbackGasOverLimit(callbackGasLimit, lim.maxCallbackGasLimit);
        }
        uint256 baseFee = _baseFee;
        uint256 pricePerCallbackGas = _pricePerCallbackGas;
        price =
            baseFee + uint256(_pricePerVcpuHour) * res.vcpus * spec.maxHours + pricePerCallbackGas * callbackGasLimit;
        // Fits the 96 bits of the payment: see _MAX_HOURS_CAP.
        terms = price | (baseFee << 96) | (pricePerCallbackGas << 160);
    }

    /// @dev Applies one operator transition. When `strict`, a rejected update reverts with its custom
    /// error; otherwise it is skipped with `UpdateSkipped`, and so is an item whose callback could not get
    /// its whole gas from what is left (decided before any effect). Returns what the settlement earned the
    /// operator (a completion's payment, a failure's callback fee, a running cancel's charge), which the
    /// caller credits to the treasury.
    function _apply(uint256 jobId, uint8 to, bytes32 resultHash, string calldata data, bool strict)
        private
        returns (uint256 earned)
    {
        StoredJob storage job = _jobs[jobId];
        bytes4 rejection = _rejection(job, to, resultHash);
        if (rejection != 0) {
            if (strict) _revertWith(rejection, jobId, job, to);
            emit UpdateSkipped(jobId, to, rejection);
            return 0;
        }
        Status status = Status(to);
        if (status == Status.Accepted) {
            job.status = status;
            emit JobAccepted(jobId, data);
            return 0;
        }
        if (status == Status.Running) {
            job.status = status;
            // Bits 208-247 of the terms: when the job started running (see StoredJob).
            job.terms |= block.timestamp << 208;
            emit JobRunning(jobId);
            return 0;
        }
        uint256 callbackGasLimit = job.callbackGasLimit;
        bool callsBack = callbackGasLimit != 0 && status != Status.Cancelled;
        if (callsBack && !strict && gasleft() < _itemGasRequired(callbackGasLimit, bytes(data).length)) {
            emit UpdateSkipped(jobId, to, InsufficientGasForCallback.selector);
            return 0;
        }
        job.status = status;
        {
            uint256 terms = job.terms;
            if (status == Status.Completed) {
                job.terms = uint256(resultHash);
                emit JobCompleted(jobId, resultHash, data);
                // The payment: the low 96 bits of the terms (see _payment).
                // forge-lint: disable-next-line(unsafe-typecast)
                earned = uint96(terms);
            } else {
                earned = _refund(job, jobId, status, data, terms, callbackGasLimit, callsBack);
            }
        }
        if (callsBack) {
            // A Failed item of a batch may carry a stray hash: the consumer gets zero, as getJob shows.
            bytes32 reported = status == Status.Completed ? resultHash : bytes32(0);
            _callback(jobId, job.requester, callbackGasLimit, status, reported);
        }
    }

    /// @dev Settles a job written Failed or Cancelled (its status already set): clears its terms, emits the
    /// status event and credits the requester's refund. Returns what the operator keeps (for the treasury).
    function _refund(
        StoredJob storage job,
        uint256 jobId,
        Status status,
        string calldata data,
        uint256 terms,
        uint256 callbackGasLimit,
        bool callsBack
    ) private returns (uint256 kept) {
        uint256 payment = _payment(terms);
        job.terms = 0;
        if (status == Status.Failed) {
            // The operator runs the callback: the callback fee is its pay (issue 9, finding 4).
            if (callsBack) kept = _callbackFee(terms, callbackGasLimit);
            emit JobFailed(jobId, data);
        } else {
            kept = _runningCharge(terms, payment, callbackGasLimit, job.maxHours);
            emit JobCancelled(jobId);
        }
        _credit(job.requester, payment - kept);
    }

    /// @dev The escrowed payment held in `terms` (bits 0-95; see StoredJob).
    function _payment(uint256 terms) private pure returns (uint256) {
        // Truncating is the point: the payment is the low 96 bits.
        // forge-lint: disable-next-line(unsafe-typecast)
        return uint96(terms);
    }

    /// @dev The callback fee of a job: the price per callback gas at submission (bits 160-207) times its limit.
    function _callbackFee(uint256 terms, uint256 callbackGasLimit) private pure returns (uint256) {
        // Truncating is the point: the price is bits 160-207.
        // forge-lint: disable-next-line(unsafe-typecast)
        return uint256(uint48(terms >> 160)) * callbackGasLimit;
    }

    /// @dev What the operator keeps when a job is cancelled: nothing if it never ran; once Running, the base
    /// fee and the vCPU-hour price of each hour started since `JobRunning` (the first starts at once), at most
    /// the job's own hours. No callback runs on Cancelled, so the callback fee is refunded.
    function _runningCharge(uint256 terms, uint256 payment, uint256 callbackGasLimit, uint256 maxHours)
        private
        view
        returns (uint256)
    {
        // Truncating is the point: the running start is bits 208-247 and the base fee bits 96-159.
        // forge-lint: disable-next-line(unsafe-typecast)
        uint256 runningSince = uint40(terms >> 208);
        if (runningSince == 0) return 0;
        // forge-lint: disable-next-line(unsafe-typecast)
        uint256 baseFee = uint64(terms >> 96);
        // The quote was baseFee + vcpuHourPrice * vcpus * maxHours + callbackFee, at these prices.
        uint256 hoursPrice = payment - baseFee - _callbackFee(terms, callbackGasLimit);
        uint256 started = (block.timestamp - runningSince) / 1 hours + 1;
        // slither-disable-next-line timestamp (hours started: a validator's seconds of drift move at most one hour)
        if (started >= maxHours) return baseFee + hoursPrice;
        // Exact: hoursPrice is pricePerVcpuHour * vcpus * maxHours.
        return baseFee + hoursPrice * started / maxHours;
    }

    /// @dev The selector of the error that rejects moving `job` to `to`, or 0 when the move is valid.
    function _rejection(StoredJob storage job, uint8 to, bytes32 resultHash) private view returns (bytes4) {
        Status from = job.status;
        if (from == Status.None) return JobNotFound.selector;
        if (to <= uint8(Status.Submitted) || to >= uint8(Status.Expired)) return InvalidStatus.selector;
        if (from >= Status.Completed || uint8(from) >= to) return InvalidTransition.selector;
        // slither-disable-next-line timestamp (deadlines are hours long: seconds of validator drift do not matter)
        if (block.timestamp > job.deadline) return DeadlinePassed.selector;
        if (to == uint8(Status.Cancelled) && !job.cancelRequested) return CancelNotRequested.selector;
        if (to == uint8(Status.Completed) && resultHash == 0) return ZeroResultHash.selector;
        return 0;
    }

    /// @dev Reverts with the full custom error (with arguments) that `rejection` names.
    function _revertWith(bytes4 rejection, uint256 jobId, StoredJob storage job, uint8 to) private view {
        if (rejection == JobNotFound.selector) revert JobNotFound(jobId);
        if (rejection == InvalidStatus.selector) revert InvalidStatus(jobId, to);
        if (rejection == InvalidTransition.selector) revert InvalidTransition(jobId, job.status, Status(to));
        if (rejection == DeadlinePassed.selector) revert DeadlinePassed(jobId, job.deadline);
        if (rejection == CancelNotRequested.selector) revert CancelNotRequested(jobId);
        revert ZeroResultHash(jobId);
    }

    /// @dev Calls `onJobFinished` on `target` with exactly `gasLimit` gas. The return data is never copied
    /// (a consumer cannot grief with a huge revert reason) and a failure is an event, not a revert. Reverts
    /// only when the transaction itself was sent with too little gas to honour `gasLimit`.
    function _callback(uint256 jobId, address target, uint256 gasLimit, Status status, bytes32 resultHash) private {
        bytes memory payload = abi.encodeCall(IJobConsumer.onJobFinished, (jobId, status, resultHash));
        uint256 available = gasleft();
        uint256 required = _callbackGasRequired(gasLimit);
        if (available < required) revert InsufficientGasForCallback(jobId, required, available);
        bool success;
        // slither-disable-next-line timestamp (a code size, tainted through the job's status; no time comparison)
        if (target.code.length != 0) {
            // Assembly to pass exactly `gasLimit` and to skip copying return data.
            // slither-disable-next-line assembly (no other way to skip copying a griefer's return data)
            assembly ("memory-safe") {
                success := call(gasLimit, target, 0, add(payload, 0x20), mload(payload), 0, 0)
            }
        }
        if (!success) emit CallbackFailed(jobId);
    }

    /// @dev Gas that must be left just before a callback's CALL: the callee must get `gasLimit` after EIP-150
    /// keeps back 1/64 of what is left at the CALL, plus the few opcodes around it.
    function _callbackGasRequired(uint256 gasLimit) private pure returns (uint256) {
        // Cannot overflow: a stored callback gas limit has 24 bits.
        unchecked {
            return gasLimit + gasLimit / 63 + _GAS_FOR_CALL_EXACT_CHECK;
        }
    }

    /// @dev Gas an `applyUpdates` item with a callback needs when it starts, so that its callback still gets
    /// its whole limit after the item's own writes and events.
    function _itemGasRequired(uint256 gasLimit, uint256 dataLength) private pure returns (uint256) {
        // Cannot overflow: 24 bits of callback gas, and a calldata length far below 2^64.
        unchecked {
            return _callbackGasRequired(gasLimit) + _GAS_FOR_SETTLEMENT + dataLength * _GAS_PER_DATA_BYTE;
        }
    }

    function _credit(address account, uint256 amount) private {
        // slither-disable-next-line incorrect-equality,timestamp (an amount to credit, not a balance; no time)
        if (amount == 0) return;
        _credits[account] += amount;
        emit Credited(account, amount);
    }

    function _setPricing(Pricing memory newPricing) private {
        _baseFee = newPricing.baseFee;
        _pricePerVcpuHour = newPricing.pricePerVcpuHour;
        _pricePerCallbackGas = newPricing.pricePerCallbackGas;
        emit PricingSet(newPricing);
    }

    function _setLimits(Limits memory newLimits, uint32 newDeadlineGrace) private {
        if (newLimits.maxCallbackGasLimit > _MAX_CALLBACK_GAS_CAP) {
            revert LimitAboveCap("maxCallbackGasLimit", newLimits.maxCallbackGasLimit, _MAX_CALLBACK_GAS_CAP);
        }
        if (newLimits.maxHours > _MAX_HOURS_CAP) revert LimitAboveCap("maxHours", newLimits.maxHours, _MAX_HOURS_CAP);
        if (newDeadlineGrace > _MAX_DEADLINE_GRACE) {
            revert LimitAboveCap("deadlineGrace", newDeadlineGrace, _MAX_DEADLINE_GRACE);
        }
        _limits = newLimits;
        _deadlineGrace = newDeadlineGrace;
        emit LimitsSet(newLimits, newDeadlineGrace);
    }

    function _setTreasury(address newTreasury) private {
        if (newTreasury == address(0)) revert ZeroAddress();
        _treasury = newTreasury;
        emit TreasurySet(newTreasury);
    }
}
