// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IJobEscrow
/// @notice The public interface of ce-bridge's job escrow: users pay for a Charity Engine compute job
/// on-chain, the bridge operator runs it off-chain and writes its status and result hash back, and the
/// escrowed payment goes to the treasury on success or back to the requester otherwise, by the money
/// rules below (prices are those in force at submission):
/// - only the quote is escrowed; an overpayment is credited back to the requester at submission;
/// - Completed: the payment goes to the treasury;
/// - Failed: refunded, less the callback fee (`pricePerCallbackGas * callbackGasLimit`) when the job asked
///   for a callback, which the operator then runs;
/// - Cancelled before `JobRunning`: refunded in full; Cancelled once Running: the treasury keeps the base fee
///   and `pricePerVcpuHour * vcpus` for each hour started since `JobRunning` (at most the job's hours), the
///   rest is refunded (no callback runs on Cancelled, so its fee is refunded too);
/// - Expired (`reclaimExpired`): refunded in full.
/// @dev This interface is a contract with outside code (see docs/PROTOCOL.md): names, types, Status values and
/// events are fixed; extend, never change.
interface IJobEscrow {
    // ------------------------------------------------------------------ types

    /// @notice Compute resources of a job, in CE's units (MB for ram, disk and network).
    struct Resources {
        uint16 vcpus;
        uint32 ram;
        uint32 disk;
        uint32 networkDownload;
        uint32 networkUpload;
    }

    /// @notice A file CE downloads into the job's working directory before it starts.
    struct InputFile {
        string filename;
        string url;
    }

    /// @notice A job as CE's `job-create` takes it; `maxHours` is CE's `hours`.
    struct JobSpec {
        string app;
        string commandLine;
        Resources specs;
        uint16 maxHours;
        InputFile[] inputFiles;
    }

    /// @notice Lifecycle of a job. Values 0..7 are fixed.
    enum Status {
        None,
        Submitted,
        Accepted,
        Running,
        Completed,
        Failed,
        Cancelled,
        Expired
    }

    /// @notice A job as `getJob` returns it.
    /// @param requester who submitted and paid (and receives the callback and any refund)
    /// @param status the job's current status
    /// @param cancelRequested the requester asked for cancellation after the job was accepted
    /// @param deadline after this timestamp no operator write is accepted and anyone may reclaim
    /// @param callbackGasLimit gas for `IJobConsumer.onJobFinished`; 0 = no callback
    /// @param payment wei still escrowed (the quote); 0 once settled
    /// @param resultHash the result hash; 0 until Completed
    struct Job {
        address requester;
        Status status;
        bool cancelRequested;
        uint64 deadline;
        uint32 callbackGasLimit;
        uint256 payment;
        bytes32 resultHash;
    }

    /// @notice One item of `applyUpdates`.
    /// @param status a Status value, read as uint8 so that an out-of-range value is skipped
    /// @param resultHash for Completed
    /// @param data remote job id (Accepted), result URI (Completed), reason (Failed, Cancelled)
    struct Update {
        uint256 jobId;
        uint8 status;
        bytes32 resultHash;
        string data;
    }

    /// @notice Admin-set price of a job: `baseFee + pricePerVcpuHour * vcpus * maxHours +
    /// pricePerCallbackGas * callbackGasLimit`, in wei.
    struct Pricing {
        uint64 baseFee;
        uint64 pricePerVcpuHour;
        uint48 pricePerCallbackGas;
    }

    /// @notice Admin-set bounds on a job spec (lengths in bytes) and on its callback gas.
    struct Limits {
        uint16 maxVcpus;
        uint32 maxRam;
        uint32 maxDisk;
        uint32 maxNetworkDownload;
        uint32 maxNetworkUpload;
        uint16 maxHours;
        uint16 maxAppLength;
        uint16 maxCommandLineLength;
        uint8 maxInputFiles;
        uint16 maxInputFileLength;
        uint32 maxCallbackGasLimit;
    }

    // ------------------------------------------------------------------ events

    /// @notice A job was submitted. The spec lives only here; `specHash = keccak256(abi.encode(spec))`.
    /// @param payment the wei escrowed for the job (the quote; any overpayment is credited back)
    /// @param callbackGasLimit gas for `onJobFinished`; 0 = no callback (last, so older decoders of the
    /// first six fields keep working)
    event JobSubmitted(
        uint256 indexed jobId,
        address indexed requester,
        bytes32 specHash,
        uint256 payment,
        uint64 deadline,
        JobSpec spec,
        uint32 callbackGasLimit
    );
    event JobAccepted(uint256 indexed jobId, string remoteJobId);
    event JobRunning(uint256 indexed jobId);
    event JobCompleted(uint256 indexed jobId, bytes32 resultHash, string resultURI);
    event JobFailed(uint256 indexed jobId, string reason);
    event JobCancelled(uint256 indexed jobId);
    event CancelRequested(uint256 indexed jobId);
    event JobExpired(uint256 indexed jobId);
    /// @param reason the selector of the custom error the single call would revert with
    event UpdateSkipped(uint256 indexed jobId, uint8 status, bytes4 reason);
    event CallbackFailed(uint256 indexed jobId);
    /// @notice A refund or earnings became withdrawable by `account`.
    event Credited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event PricingSet(Pricing pricing);
    event LimitsSet(Limits limits, uint32 deadlineGrace);
    event TreasurySet(address indexed treasury);

    // ------------------------------------------------------------------ errors

    error EmptyApp();
    error EmptyCommandLine();
    error AppTooLong(uint256 length, uint256 max);
    error CommandLineTooLong(uint256 length, uint256 max);
    error TooManyInputFiles(uint256 count, uint256 max);
    /// @notice Input file `index` has an empty filename or URL.
    error EmptyInputFile(uint256 index);
    /// @notice Input file `index` has a filename plus URL of `length` bytes, more than `max`.
    error InputFileTooLong(uint256 index, uint256 length, uint256 max);
    error ZeroVcpus();
    error VcpusOverLimit(uint256 vcpus, uint256 max);
    error RamOverLimit(uint256 ram, uint256 max);
    error DiskOverLimit(uint256 disk, uint256 max);
    error NetworkDownloadOverLimit(uint256 networkDownload, uint256 max);
    error NetworkUploadOverLimit(uint256 networkUpload, uint256 max);
    error ZeroHours();
    error HoursOverLimit(uint256 maxHours, uint256 max);
    error CallbackGasOverLimit(uint256 callbackGasLimit, uint256 max);
    error PaymentTooLow(uint256 sent, uint256 required);
    error JobNotFound(uint256 jobId);
    error NotRequester(uint256 jobId, address caller);
    /// @notice `to` cannot follow the job's current status `from`.
    error InvalidTransition(uint256 jobId, Status from, Status to);
    /// @notice An update's status is not one the operator may write (None, Submitted, Expired or > 7).
    error InvalidStatus(uint256 jobId, uint8 status);
    error CancelNotRequested(uint256 jobId);
    error CancelAlreadyRequested(uint256 jobId);
    /// @notice The operator wrote after the job's deadline; only `reclaimExpired` settles it now.
    error DeadlinePassed(uint256 jobId, uint256 deadline);
    error JobNotExpired(uint256 jobId, uint256 deadline);
    error NothingToWithdraw(address account);
    /// @notice Not enough gas left to give the consumer callback exactly its gas limit.
    error InsufficientGasForCallback(uint256 jobId, uint256 required, uint256 available);
    /// @notice A completion must carry a non-zero result hash.
    error ZeroResultHash(uint256 jobId);
    error ZeroAddress();
    /// @notice `setLimits` was given `value` for `field`, above its hard cap `cap` (see `setLimits`).
    error LimitAboveCap(string field, uint256 value, uint256 cap);

    // ------------------------------------------------------------------ users

    /// @notice Submits a job and escrows its quote; any `msg.value` above the quote is credited back to the
    /// caller at once (`Credited`, then `withdraw`).
    /// @param spec the job, as CE's job-create takes it
    /// @param callbackGasLimit gas for `onJobFinished` on the requester; 0 = no callback
    /// @return jobId the new job's id (ids start at 1)
    function submitJob(JobSpec calldata spec, uint32 callbackGasLimit) external payable returns (uint256 jobId);

    /// @notice The minimum payment for `spec` with `callbackGasLimit`; reverts like `submitJob` on a bad spec.
    /// @return weiPrice the price in wei
    function quote(JobSpec calldata spec, uint32 callbackGasLimit) external view returns (uint256 weiPrice);

    /// @notice The stored state of job `jobId` (all zero for an unknown id).
    function getJob(uint256 jobId) external view returns (Job memory);

    /// @notice Requester only. A Submitted job is cancelled and refunded at once; an Accepted or Running
    /// one is marked (`CancelRequested`) for the operator to cancel remotely. When the operator then writes
    /// Cancelled, a job that had started running pays the base fee and the hours started since `JobRunning`.
    function cancelJob(uint256 jobId) external;

    /// @notice Anyone, after the deadline of a job with no terminal status: the job becomes Expired and
    /// its whole payment is credited to the requester, whatever its consumer does. The callback (if any)
    /// gets its whole limit: a call with too little gas for it reverts with `InsufficientGasForCallback`
    /// (skipping it instead would let anyone deny a consumer its Expired callback); since the limit is
    /// capped at 2,000,000, a call with enough gas always fits in a block.
    function reclaimExpired(uint256 jobId) external;

    /// @notice Pays out all of the caller's credited refunds or earnings.
    function withdraw() external;

    /// @notice Wei credited to `account` and not yet withdrawn.
    function creditOf(address account) external view returns (uint256);

    // ------------------------------------------------------------------ operator

    /// @notice Operator: the remote job `remoteJobId` was created for `jobId`.
    function acceptJob(uint256 jobId, string calldata remoteJobId) external;

    /// @notice Operator: the remote job started running.
    function markRunning(uint256 jobId) external;

    /// @notice Operator: the job completed; its payment is credited to the treasury.
    /// @param resultHash sha256 of the output manifest (docs/PROTOCOL.md, "Result hash")
    /// @param resultURI where the output files or their manifest can be fetched
    function completeJob(uint256 jobId, bytes32 resultHash, string calldata resultURI) external;

    /// @notice Operator: the job cannot run or failed; its payment is credited back to the requester, less
    /// the callback fee when the job asked for a callback (the operator runs it; the fee goes to the
    /// treasury).
    function failJob(uint256 jobId, string calldata reason) external;

    /// @notice Operator: applies each update as the single call would; an item that call would reject is
    /// skipped with `UpdateSkipped(jobId, status, selector)` and never reverts the batch. So is an item
    /// whose callback could not get its whole limit from the gas left (`InsufficientGasForCallback`'s
    /// selector), decided before any effect: an item with a callback needs
    /// `limit + limit / 63 + 45,000 + 16 * bytes(data).length` gas left when it starts.
    function applyUpdates(Update[] calldata updates) external;

    // ------------------------------------------------------------------ admin

    function setPricing(Pricing calldata newPricing) external;

    /// @notice Admin: the spec bounds and the deadline grace. Hard caps (`LimitAboveCap`):
    /// `maxCallbackGasLimit` <= 2,000,000 (a callback far below a block's gas, so every job can be settled),
    /// `maxHours` <= 8,760 (a year) and `deadlineGrace` <= 30 days (so a payment is never locked for years).
    function setLimits(Limits calldata newLimits, uint32 newDeadlineGrace) external;

    function setTreasury(address newTreasury) external;

    function pause() external;

    function unpause() external;

    function pricing() external view returns (Pricing memory);

    function limits() external view returns (Limits memory);

    function deadlineGrace() external view returns (uint32);

    function treasury() external view returns (address);

    /// @notice The id the next submitted job will get.
    function nextJobId() external view returns (uint256);
}
