// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {IJobEscrow} from "../interfaces/IJobEscrow.sol";
import {EscrowTest} from "./utils/EscrowTest.sol";
import {Specs} from "./utils/Specs.sol";
import {Vm} from "./utils/Vm.sol";

/// @notice submitJob and quote: storage and event of a submission, every spec bound (at the limit and one
/// past it, then fuzzed around it), the price formula and the payment check, and pausing.
contract JobEscrowSubmitTest is EscrowTest {
    /// @dev More than any quote under the default pricing and limits (about 1.08 ether at most).
    uint256 internal constant PLENTY = 2 ether;

    // ------------------------------------------------------------------ the happy path

    function test_submit_storesJobAndEmitsFullSpec() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        uint256 price = _price(spec, 0);
        assertEq(price, 0.0003 ether, "default price: base 0.0001 + 0.0001 * 2 vcpus * 1 h");
        // forge-lint: disable-next-line(unsafe-typecast)
        uint64 deadline = uint64(START_TIME + 1 hours + GRACE);

        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobSubmitted(1, alice, keccak256(abi.encode(spec)), price, deadline, spec, 0);
        uint256 jobId = _submit(alice, spec, 0, price);

        assertEq(jobId, 1, "ids start at 1");
        IJobEscrow.Job memory job = escrow.getJob(jobId);
        assertEq(job.requester, alice, "requester");
        assertEq(job.status, IJobEscrow.Status.Submitted, "status");
        assertEq(job.cancelRequested, false, "cancelRequested");
        assertEq(job.deadline, deadline, "deadline = now + hours * 3600 + grace");
        assertEq(job.callbackGasLimit, 0, "callbackGasLimit");
        assertEq(job.payment, price, "payment escrowed");
        assertEq(job.resultHash, bytes32(0), "resultHash 0 until Completed");
        assertEq(escrow.nextJobId(), 2, "nextJobId");
        assertEq(address(escrow).balance, price, "escrow holds the payment");
    }

    /// @dev Decodes the event independently of expectEmit: the specHash in the log is keccak256 of the
    /// ABI encoding of the spec the log carries, for a spec with several input files of odd lengths.
    function test_submit_eventSpecHashIsKeccakOfEncodedSpec() public {
        IJobEscrow.JobSpec memory spec = Specs.withInputFiles(3);
        spec.app = Specs.filled(33);
        spec.inputFiles[1].url = Specs.filled(67);
        uint256 price = _price(spec, 50_000);
        vm.recordLogs();
        uint256 jobId = _submit(bob, spec, 50_000, price);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 1, "one log");
        assertEq(logs[0].topics[0], IJobEscrow.JobSubmitted.selector, "topic0");
        assertEq(logs[0].topics[1], bytes32(jobId), "topic1 = jobId");
        assertEq(logs[0].topics[2], bytes32(uint256(uint160(bob))), "topic2 = requester");
        (bytes32 specHash, uint256 payment, uint64 deadline, IJobEscrow.JobSpec memory logged, uint32 gasLimit) =
            abi.decode(logs[0].data, (bytes32, uint256, uint64, IJobEscrow.JobSpec, uint32));
        assertEq(specHash, keccak256(abi.encode(spec)), "specHash = keccak256(abi.encode(spec))");
        assertEq(keccak256(abi.encode(logged)), specHash, "logged spec hashes to specHash");
        assertEq(payment, price, "payment");
        assertEq(deadline, escrow.getJob(jobId).deadline, "deadline");
        assertEq(gasLimit, 50_000, "callbackGasLimit, the last field");
        assertEq(logs[0].data, abi.encode(specHash, price, deadline, spec, uint32(50_000)), "data = abi.encode(...)");
    }

    function testFuzz_submit_specHash(uint256 appLength, uint256 commandLength, uint256 fileCount, uint256 urlLength)
        public
    {
        IJobEscrow.JobSpec memory spec = Specs.withInputFiles(_bound(fileCount, 0, 16));
        spec.app = Specs.filled(_bound(appLength, 1, 256));
        spec.commandLine = Specs.filled(_bound(commandLength, 1, 300));
        if (spec.inputFiles.length != 0) spec.inputFiles[0].url = Specs.filled(_bound(urlLength, 1, 2000));
        uint256 price = _price(spec, 0);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobSubmitted(1, alice, keccak256(abi.encode(spec)), price, _deadlineFor(spec), spec, 0);
        _submit(alice, spec, 0, price);
    }

    function test_submit_idsIncrementAcrossRequesters() public {
        assertEq(escrow.nextJobId(), 1, "nextJobId before any job");
        assertEq(_submitTypical(alice), 1, "first");
        assertEq(_submitTypical(bob), 2, "second");
        assertEq(_submitTypical(alice), 3, "third");
        assertEq(escrow.getJob(2).requester, bob, "requester of 2");
        assertEq(escrow.nextJobId(), 4, "nextJobId");
    }

    function test_submit_overpaymentIsCreditedBack_cancelRefundsTheRest() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        uint256 price = _price(spec, 0);
        uint256 sent = price + 0.5 ether;
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobSubmitted(1, alice, keccak256(abi.encode(spec)), price, _deadlineFor(spec), spec, 0);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(alice, 0.5 ether);
        uint256 jobId = _submit(alice, spec, 0, sent);
        assertEq(escrow.getJob(jobId).payment, price, "the quote escrowed");
        assertEq(address(escrow).balance, sent, "balance");
        // ... and the cancel refunds the quote: everything sent is the requester's again.
        vm.prank(alice);
        escrow.cancelJob(jobId);
        assertEq(escrow.creditOf(alice), sent, "refund is what was sent");
    }

    function test_submit_callbackGasIsPricedAndStored() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        uint256 price = escrow.quote(spec, 300_000);
        assertEq(price, 0.0003 ether + 2 gwei * 300_000, "2 gwei per callback gas");
        uint256 jobId = _submit(alice, spec, 300_000, price);
        assertEq(escrow.getJob(jobId).callbackGasLimit, 300_000, "callbackGasLimit stored");
    }

    function test_quote_isTheFormula() public {
        IJobEscrow.Pricing memory p = IJobEscrow.Pricing({baseFee: 7, pricePerVcpuHour: 11, pricePerCallbackGas: 13});
        vm.prank(admin);
        escrow.setPricing(p);
        IJobEscrow.JobSpec memory spec = Specs.sized(5, 17);
        assertEq(escrow.quote(spec, 1000), 7 + 11 * 5 * 17 + 13 * 1000, "baseFee + vcpuHour*vcpus*hours + gas*cb");
        assertEq(escrow.quote(spec, 0), 7 + 11 * 5 * 17, "no callback");
    }

    function testFuzz_quote_isTheFormula(
        IJobEscrow.Pricing memory p,
        uint256 vcpus,
        uint256 hours_,
        uint256 callbackGas
    ) public {
        vm.prank(admin);
        escrow.setPricing(p);
        IJobEscrow.JobSpec memory spec = Specs.sized(uint16(_bound(vcpus, 1, 64)), uint16(_bound(hours_, 1, 168)));
        uint32 cb = uint32(_bound(callbackGas, 0, 2_000_000));
        uint256 expected = uint256(p.baseFee) + uint256(p.pricePerVcpuHour) * spec.specs.vcpus * spec.maxHours
            + uint256(p.pricePerCallbackGas) * cb;
        assertEq(escrow.quote(spec, cb), expected, "quote");
        vm.deal(alice, expected); // prices reach ~2^64 * 64 * 168 wei
        uint256 jobId = _submit(alice, spec, cb, expected);
        assertEq(escrow.getJob(jobId).payment, expected, "payment at exactly the quote");
    }

    function testFuzz_submit_deadline(uint256 timestamp, uint256 hours_, uint32 grace) public {
        timestamp = _bound(timestamp, 1, 1e10);
        IJobEscrow.Limits memory lim = escrow.limits();
        lim.maxHours = 8760; // the cap
        grace = uint32(_bound(grace, 0, 30 days)); // the cap
        vm.prank(admin);
        escrow.setLimits(lim, grace);
        vm.warp(timestamp);
        IJobEscrow.JobSpec memory spec = Specs.sized(1, uint16(_bound(hours_, 1, 8760)));
        uint256 jobId = _submit(alice, spec, 0, _price(spec, 0));
        assertEq(
            escrow.getJob(jobId).deadline, timestamp + uint256(spec.maxHours) * 3600 + grace, "now + hours*3600 + grace"
        );
    }

    // ------------------------------------------------------------------ payment

    function test_submit_paymentOneWeiBelowQuote_reverts() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        uint256 price = _price(spec, 100_000);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.PaymentTooLow.selector, price - 1, price));
        escrow.submitJob{value: price - 1}(spec, 100_000);
    }

    function test_submit_noPayment_reverts() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.PaymentTooLow.selector, 0, _price(spec, 0)));
        escrow.submitJob(spec, 0);
    }

    function test_submit_freeWhenPricedAtZero() public {
        vm.prank(admin);
        escrow.setPricing(IJobEscrow.Pricing(0, 0, 0));
        uint256 jobId = _submit(alice, Specs.typical(), 0, 0);
        _assertJob(jobId, alice, IJobEscrow.Status.Submitted, 0, 0);
        // Settling a free job credits nothing: no Credited event, and there is nothing to withdraw.
        vm.recordLogs();
        _complete(jobId);
        assertEq(_count(vm.getRecordedLogs(), IJobEscrow.Credited.selector), 0, "no Credited for 0 wei");
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.NothingToWithdraw.selector, admin));
        escrow.withdraw();
    }

    /// @dev Payment below, at and above the quote, for random sizes and callback gas.
    function testFuzz_submit_payment(uint256 vcpus, uint256 hours_, uint256 callbackGas, uint256 payment) public {
        IJobEscrow.JobSpec memory spec = Specs.sized(uint16(_bound(vcpus, 1, 64)), uint16(_bound(hours_, 1, 168)));
        uint32 cb = uint32(_bound(callbackGas, 0, 2_000_000));
        uint256 price = _price(spec, cb);
        payment = _bound(payment, 0, 2 * price);
        if (payment % 5 == 0) payment = price; // hit "exactly the quote" often
        if (payment < price) {
            vm.prank(alice);
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.PaymentTooLow.selector, payment, price));
            escrow.submitJob{value: payment}(spec, cb);
            assertEq(escrow.nextJobId(), 1, "no job");
        } else {
            uint256 jobId = _submit(alice, spec, cb, payment);
            assertEq(escrow.getJob(jobId).payment, price, "the quote is escrowed");
            assertEq(escrow.creditOf(alice), payment - price, "the overpayment is credited back");
            assertEq(address(escrow).balance, payment, "balance");
        }
    }

    // ------------------------------------------------------------------ pausing

    function test_submit_whenPaused_reverts() public {
        vm.prank(admin);
        escrow.pause();
        IJobEscrow.JobSpec memory spec = Specs.typical();
        uint256 price = _price(spec, 0);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(Pausable.EnforcedPause.selector));
        escrow.submitJob{value: price}(spec, 0);
        assertEq(escrow.quote(spec, 0), price, "quote still answers");

        vm.prank(admin);
        escrow.unpause();
        assertEq(_submit(alice, spec, 0, price), 1, "submits again once unpaused");
    }

    // ------------------------------------------------------------------ every bound: one past the limit

    function test_submit_emptyApp_reverts() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        spec.app = "";
        _expectRejected(spec, 0, abi.encodeWithSelector(IJobEscrow.EmptyApp.selector));
    }

    function test_submit_appTooLong_reverts() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        spec.app = Specs.filled(257);
        _expectRejected(spec, 0, abi.encodeWithSelector(IJobEscrow.AppTooLong.selector, 257, 256));
    }

    function test_submit_emptyCommandLine_reverts() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        spec.commandLine = "";
        _expectRejected(spec, 0, abi.encodeWithSelector(IJobEscrow.EmptyCommandLine.selector));
    }

    function test_submit_commandLineTooLong_reverts() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        spec.commandLine = Specs.filled(4097);
        _expectRejected(spec, 0, abi.encodeWithSelector(IJobEscrow.CommandLineTooLong.selector, 4097, 4096));
    }

    function test_submit_tooManyInputFiles_reverts() public {
        _expectRejected(
            Specs.withInputFiles(17), 0, abi.encodeWithSelector(IJobEscrow.TooManyInputFiles.selector, 17, 16)
        );
    }

    function test_submit_emptyInputFilename_reverts() public {
        IJobEscrow.JobSpec memory spec = Specs.withInputFiles(3);
        spec.inputFiles[2].filename = "";
        _expectRejected(spec, 0, abi.encodeWithSelector(IJobEscrow.EmptyInputFile.selector, 2));
    }

    function test_submit_emptyInputUrl_reverts() public {
        IJobEscrow.JobSpec memory spec = Specs.withInputFiles(3);
        spec.inputFiles[1].url = "";
        _expectRejected(spec, 0, abi.encodeWithSelector(IJobEscrow.EmptyInputFile.selector, 1));
    }

    function test_submit_inputFileTooLong_reverts() public {
        IJobEscrow.JobSpec memory spec = Specs.withInputFiles(2);
        // "in01.csv" is 8 bytes: 8 + 2041 = 2049.
        spec.inputFiles[1].url = Specs.filled(2041);
        _expectRejected(spec, 0, abi.encodeWithSelector(IJobEscrow.InputFileTooLong.selector, 1, 2049, 2048));
    }

    function test_submit_zeroVcpus_reverts() public {
        _expectRejected(Specs.sized(0, 1), 0, abi.encodeWithSelector(IJobEscrow.ZeroVcpus.selector));
    }

    function test_submit_vcpusOverLimit_reverts() public {
        _expectRejected(Specs.sized(65, 1), 0, abi.encodeWithSelector(IJobEscrow.VcpusOverLimit.selector, 65, 64));
    }

    function test_submit_ramOverLimit_reverts() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        spec.specs.ram = 262_145;
        _expectRejected(spec, 0, abi.encodeWithSelector(IJobEscrow.RamOverLimit.selector, 262_145, 262_144));
    }

    function test_submit_diskOverLimit_reverts() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        spec.specs.disk = 1_048_577;
        _expectRejected(spec, 0, abi.encodeWithSelector(IJobEscrow.DiskOverLimit.selector, 1_048_577, 1_048_576));
    }

    function test_submit_networkDownloadOverLimit_reverts() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        spec.specs.networkDownload = 1_048_577;
        _expectRejected(
            spec, 0, abi.encodeWithSelector(IJobEscrow.NetworkDownloadOverLimit.selector, 1_048_577, 1_048_576)
        );
    }

    function test_submit_networkUploadOverLimit_reverts() public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        spec.specs.networkUpload = 1_048_577;
        _expectRejected(
            spec, 0, abi.encodeWithSelector(IJobEscrow.NetworkUploadOverLimit.selector, 1_048_577, 1_048_576)
        );
    }

    function test_submit_zeroHours_reverts() public {
        _expectRejected(Specs.sized(2, 0), 0, abi.encodeWithSelector(IJobEscrow.ZeroHours.selector));
    }

    function test_submit_hoursOverLimit_reverts() public {
        _expectRejected(Specs.sized(2, 169), 0, abi.encodeWithSelector(IJobEscrow.HoursOverLimit.selector, 169, 168));
    }

    function test_submit_callbackGasOverLimit_reverts() public {
        _expectRejected(
            Specs.typical(),
            2_000_001,
            abi.encodeWithSelector(IJobEscrow.CallbackGasOverLimit.selector, 2_000_001, 2_000_000)
        );
    }

    // ------------------------------------------------------------------ every bound: exactly at the limit

    function test_submit_everyFieldAtItsLimit_succeeds() public {
        IJobEscrow.JobSpec memory spec = Specs.withInputFiles(16);
        spec.app = Specs.filled(256);
        spec.commandLine = Specs.filled(4096);
        spec.specs = IJobEscrow.Resources({
            vcpus: 64, ram: 262_144, disk: 1_048_576, networkDownload: 1_048_576, networkUpload: 1_048_576
        });
        spec.maxHours = 168;
        for (uint256 i; i < 16; ++i) {
            spec.inputFiles[i].url = Specs.filled(2048 - 8); // filename "inNN.csv" is 8 bytes
        }
        uint256 price = _price(spec, 2_000_000);
        assertEq(escrow.quote(spec, 2_000_000), price, "quote");
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobSubmitted(1, alice, keccak256(abi.encode(spec)), price, _deadlineFor(spec), spec, 2_000_000);
        uint256 jobId = _submit(alice, spec, 2_000_000, price);
        assertEq(escrow.getJob(jobId).callbackGasLimit, 2_000_000, "callback gas at its limit");
    }

    function test_submit_minimalSpec_succeeds() public {
        IJobEscrow.JobSpec memory spec;
        spec.app = "a";
        spec.commandLine = "b";
        spec.specs.vcpus = 1;
        spec.maxHours = 1;
        uint256 jobId = _submit(alice, spec, 0, _price(spec, 0));
        _assertJob(jobId, alice, IJobEscrow.Status.Submitted, _price(spec, 0), 0);
    }

    function test_submit_boundsFollowSetLimits() public {
        IJobEscrow.Limits memory lim = escrow.limits();
        lim.maxVcpus = 4;
        vm.prank(admin);
        escrow.setLimits(lim, GRACE);
        _expectRejected(Specs.sized(5, 1), 0, abi.encodeWithSelector(IJobEscrow.VcpusOverLimit.selector, 5, 4));
        _submit(alice, Specs.sized(4, 1), 0, 1 ether);
    }

    // ------------------------------------------------------------------ fuzzed around each limit
    // (`_around` never exceeds the typeMax it is given, so the narrowing casts below are exact.)

    function testFuzz_submit_vcpus(uint256 seed) public {
        uint256 v = _around(seed, 64, type(uint16).max);
        bytes memory err;
        if (v == 0) err = abi.encodeWithSelector(IJobEscrow.ZeroVcpus.selector);
        else if (v > 64) err = abi.encodeWithSelector(IJobEscrow.VcpusOverLimit.selector, v, 64);
        // forge-lint: disable-next-line(unsafe-typecast)
        _expectOutcome(Specs.sized(uint16(v), 1), 0, err);
    }

    function testFuzz_submit_ram(uint256 seed) public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        uint256 v = _around(seed, 262_144, type(uint32).max);
        // forge-lint: disable-next-line(unsafe-typecast)
        spec.specs.ram = uint32(v);
        bytes memory err;
        if (v > 262_144) err = abi.encodeWithSelector(IJobEscrow.RamOverLimit.selector, v, 262_144);
        _expectOutcome(spec, 0, err);
    }

    function testFuzz_submit_disk(uint256 seed) public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        uint256 v = _around(seed, 1_048_576, type(uint32).max);
        // forge-lint: disable-next-line(unsafe-typecast)
        spec.specs.disk = uint32(v);
        bytes memory err;
        if (v > 1_048_576) err = abi.encodeWithSelector(IJobEscrow.DiskOverLimit.selector, v, 1_048_576);
        _expectOutcome(spec, 0, err);
    }

    function testFuzz_submit_networkDownload(uint256 seed) public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        uint256 v = _around(seed, 1_048_576, type(uint32).max);
        // forge-lint: disable-next-line(unsafe-typecast)
        spec.specs.networkDownload = uint32(v);
        bytes memory err;
        if (v > 1_048_576) err = abi.encodeWithSelector(IJobEscrow.NetworkDownloadOverLimit.selector, v, 1_048_576);
        _expectOutcome(spec, 0, err);
    }

    function testFuzz_submit_networkUpload(uint256 seed) public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        uint256 v = _around(seed, 1_048_576, type(uint32).max);
        // forge-lint: disable-next-line(unsafe-typecast)
        spec.specs.networkUpload = uint32(v);
        bytes memory err;
        if (v > 1_048_576) err = abi.encodeWithSelector(IJobEscrow.NetworkUploadOverLimit.selector, v, 1_048_576);
        _expectOutcome(spec, 0, err);
    }

    function testFuzz_submit_hours(uint256 seed) public {
        uint256 v = _around(seed, 168, type(uint16).max);
        bytes memory err;
        if (v == 0) err = abi.encodeWithSelector(IJobEscrow.ZeroHours.selector);
        else if (v > 168) err = abi.encodeWithSelector(IJobEscrow.HoursOverLimit.selector, v, 168);
        // forge-lint: disable-next-line(unsafe-typecast)
        _expectOutcome(Specs.sized(2, uint16(v)), 0, err);
    }

    function testFuzz_submit_callbackGas(uint256 seed) public {
        uint256 v = _around(seed, 2_000_000, type(uint32).max);
        bytes memory err;
        if (v > 2_000_000) err = abi.encodeWithSelector(IJobEscrow.CallbackGasOverLimit.selector, v, 2_000_000);
        // forge-lint: disable-next-line(unsafe-typecast)
        _expectOutcome(Specs.typical(), uint32(v), err);
    }

    function testFuzz_submit_appLength(uint256 seed) public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        uint256 v = _around(seed, 256, 600);
        spec.app = Specs.filled(v);
        bytes memory err;
        if (v == 0) err = abi.encodeWithSelector(IJobEscrow.EmptyApp.selector);
        else if (v > 256) err = abi.encodeWithSelector(IJobEscrow.AppTooLong.selector, v, 256);
        _expectOutcome(spec, 0, err);
    }

    function testFuzz_submit_commandLineLength(uint256 seed) public {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        uint256 v = _around(seed, 4096, 5000);
        spec.commandLine = Specs.filled(v);
        bytes memory err;
        if (v == 0) err = abi.encodeWithSelector(IJobEscrow.EmptyCommandLine.selector);
        else if (v > 4096) err = abi.encodeWithSelector(IJobEscrow.CommandLineTooLong.selector, v, 4096);
        _expectOutcome(spec, 0, err);
    }

    function testFuzz_submit_inputFileCount(uint256 seed) public {
        uint256 v = _around(seed, 16, 40);
        bytes memory err;
        if (v > 16) err = abi.encodeWithSelector(IJobEscrow.TooManyInputFiles.selector, v, 16);
        _expectOutcome(Specs.withInputFiles(v), 0, err);
    }

    function testFuzz_submit_inputFileLength(uint256 seed, uint256 index, bool inName) public {
        IJobEscrow.JobSpec memory spec = Specs.withInputFiles(4);
        index = index % 4;
        uint256 total = _around(seed, 2048, 3000);
        // The filename or the URL of file `index` takes the length, the other part keeps at least a byte.
        if (inName) {
            uint256 urlLength = bytes(spec.inputFiles[index].url).length; // 40
            spec.inputFiles[index].filename = Specs.filled(total > urlLength ? total - urlLength : 0);
        } else {
            uint256 nameLength = bytes(spec.inputFiles[index].filename).length; // 8
            spec.inputFiles[index].url = Specs.filled(total > nameLength ? total - nameLength : 0);
        }
        IJobEscrow.InputFile memory file = spec.inputFiles[index];
        uint256 length = bytes(file.filename).length + bytes(file.url).length;
        bytes memory err;
        if (bytes(file.filename).length == 0 || bytes(file.url).length == 0) {
            err = abi.encodeWithSelector(IJobEscrow.EmptyInputFile.selector, index);
        } else if (length > 2048) {
            err = abi.encodeWithSelector(IJobEscrow.InputFileTooLong.selector, index, length, 2048);
        }
        _expectOutcome(spec, 0, err);
    }

    // ------------------------------------------------------------------ helpers

    /// @dev Both quote and submitJob reject `spec` with exactly `err`, and no job is created.
    function _expectRejected(IJobEscrow.JobSpec memory spec, uint32 callbackGasLimit, bytes memory err) internal {
        vm.expectRevert(err);
        escrow.quote(spec, callbackGasLimit);
        vm.prank(alice);
        vm.expectRevert(err);
        escrow.submitJob{value: PLENTY}(spec, callbackGasLimit);
        assertEq(escrow.nextJobId(), 1, "no job created");
        assertEq(address(escrow).balance, 0, "nothing escrowed");
    }

    /// @dev Rejected with `err`, or (empty `err`) accepted at exactly the formula's price.
    function _expectOutcome(IJobEscrow.JobSpec memory spec, uint32 callbackGasLimit, bytes memory err) internal {
        if (err.length != 0) {
            _expectRejected(spec, callbackGasLimit, err);
            return;
        }
        uint256 price = _price(spec, callbackGasLimit);
        assertEq(escrow.quote(spec, callbackGasLimit), price, "quote");
        uint256 jobId = _submit(alice, spec, callbackGasLimit, price);
        _assertJob(jobId, alice, IJobEscrow.Status.Submitted, price, 0);
    }

    /// @dev Mostly a value within 8 of `limit` (so at, just below and just past it), otherwise anywhere
    /// in [0, typeMax].
    function _around(uint256 seed, uint256 limit, uint256 typeMax) internal pure returns (uint256) {
        if (seed % 4 == 0) return (seed >> 2) % (typeMax + 1);
        uint256 low = limit > 8 ? limit - 8 : 0;
        uint256 v = low + (seed >> 2) % 17;
        return v > typeMax ? typeMax : v;
    }
}
