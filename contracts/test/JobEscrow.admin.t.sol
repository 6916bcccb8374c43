// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {JobEscrow} from "../JobEscrow.sol";
import {IJobEscrow} from "../interfaces/IJobEscrow.sol";
import {EscrowTest} from "./utils/EscrowTest.sol";
import {Specs} from "./utils/Specs.sol";

/// @notice Deployment defaults, roles, the admin setters and their events, and pausing (which stops only
/// submitJob).
contract JobEscrowAdminTest is EscrowTest {
    uint256 internal constant PRICE = 0.0003 ether;

    // ------------------------------------------------------------------ deployment

    function test_constructor_defaultsAndEvents() public {
        IJobEscrow.Pricing memory pricing =
            IJobEscrow.Pricing({baseFee: 0.0001 ether, pricePerVcpuHour: 0.0001 ether, pricePerCallbackGas: 2 gwei});
        IJobEscrow.Limits memory lim = _defaultLimits();
        vm.expectEmit(true, true, true, true);
        emit IAccessControl.RoleGranted(DEFAULT_ADMIN_ROLE, bob, address(this));
        vm.expectEmit(true, true, true, true);
        emit IJobEscrow.TreasurySet(bob);
        vm.expectEmit(true, true, true, true);
        emit IJobEscrow.PricingSet(pricing);
        vm.expectEmit(true, true, true, true);
        emit IJobEscrow.LimitsSet(lim, 1 hours);
        JobEscrow fresh = new JobEscrow(bob);

        assertTrue(fresh.hasRole(DEFAULT_ADMIN_ROLE, bob), "admin role");
        assertTrue(!fresh.hasRole(OPERATOR_ROLE, bob), "no operator role by default");
        assertEq(fresh.OPERATOR_ROLE(), keccak256("OPERATOR_ROLE"), "OPERATOR_ROLE");
        assertEq(fresh.treasury(), bob, "treasury starts as admin");
        assertEq(fresh.nextJobId(), 1, "nextJobId");
        assertEq(fresh.deadlineGrace(), 1 hours, "grace");
        assertEq(abi.encode(fresh.pricing()), abi.encode(pricing), "pricing");
        assertEq(abi.encode(fresh.limits()), abi.encode(lim), "limits");
        assertTrue(fresh.supportsInterface(type(IJobEscrow).interfaceId), "IJobEscrow interface id");
        assertTrue(fresh.supportsInterface(type(IAccessControl).interfaceId), "IAccessControl interface id");
        assertTrue(!fresh.supportsInterface(0xffffffff), "0xffffffff");
    }

    function test_constructor_zeroAdmin_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.ZeroAddress.selector));
        new JobEscrow(address(0));
    }

    // ------------------------------------------------------------------ setters

    function test_setPricing_appliesToNewQuotesOnly() public {
        uint256 old = _submitTypical(alice);
        IJobEscrow.Pricing memory p =
            IJobEscrow.Pricing({baseFee: 1 ether, pricePerVcpuHour: 0, pricePerCallbackGas: 0});
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.PricingSet(p);
        vm.prank(admin);
        escrow.setPricing(p);
        assertEq(abi.encode(escrow.pricing()), abi.encode(p), "pricing()");
        assertEq(escrow.quote(Specs.typical(), 1_000_000), 1 ether, "new quote");
        assertEq(escrow.getJob(old).payment, PRICE, "escrowed payment unchanged");
    }

    function test_setLimits_changesBoundsAndGrace() public {
        uint256 old = _submitTypical(alice);
        uint64 oldDeadline = escrow.getJob(old).deadline;
        IJobEscrow.Limits memory lim = _defaultLimits();
        lim.maxHours = 2;
        lim.maxCallbackGasLimit = 100_000;
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.LimitsSet(lim, 10 minutes);
        vm.prank(admin);
        escrow.setLimits(lim, 10 minutes);
        assertEq(abi.encode(escrow.limits()), abi.encode(lim), "limits()");
        assertEq(escrow.deadlineGrace(), 10 minutes, "deadlineGrace()");

        IJobEscrow.JobSpec memory spec = Specs.sized(1, 2);
        uint256 jobId = _submit(alice, spec, 100_000, 1 ether);
        assertEq(escrow.getJob(jobId).deadline, START_TIME + 2 hours + 10 minutes, "new grace");
        assertEq(escrow.getJob(old).deadline, oldDeadline, "old deadline unchanged");
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.HoursOverLimit.selector, 3, 2));
        escrow.submitJob{value: 1 ether}(Specs.sized(1, 3), 0);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.CallbackGasOverLimit.selector, 100_001, 100_000));
        escrow.submitJob{value: 1 ether}(spec, 100_001);
    }

    function test_setTreasury_redirectsFutureEarnings() public {
        uint256 a = _jobIn(IJobEscrow.Status.Running);
        uint256 b = _jobIn(IJobEscrow.Status.Running);
        _complete(a);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.TreasurySet(bob);
        vm.prank(admin);
        escrow.setTreasury(bob);
        assertEq(escrow.treasury(), bob, "treasury()");
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Credited(bob, PRICE);
        _complete(b);
        assertEq(escrow.creditOf(admin), PRICE, "old treasury keeps what it earned");
        assertEq(escrow.creditOf(bob), PRICE, "new treasury earns");
        vm.prank(bob);
        escrow.withdraw();
        vm.prank(admin);
        escrow.withdraw();
        assertEq(address(escrow).balance, 0, "all paid out");
    }

    /// @dev The job counter shares a storage slot with the pause flag, the grace and the pricing (see the
    /// contract's layout comment): writing those must not disturb it, nor it them.
    function test_adminWrites_keepThePackedJobCounter() public {
        assertEq(_submitTypical(alice), 1, "first id");
        IJobEscrow.Pricing memory p =
            IJobEscrow.Pricing({baseFee: type(uint64).max, pricePerVcpuHour: 1, pricePerCallbackGas: type(uint48).max});
        vm.startPrank(admin);
        escrow.setPricing(p);
        escrow.setLimits(_defaultLimits(), 30 days);
        escrow.pause();
        escrow.unpause();
        vm.stopPrank();
        assertEq(escrow.nextJobId(), 2, "counter kept");
        vm.deal(alice, 100 ether);
        assertEq(_submit(alice, Specs.typical(), 0, 20 ether), 2, "second id");
        assertEq(escrow.nextJobId(), 3, "counter advanced");
        assertEq(abi.encode(escrow.pricing()), abi.encode(p), "pricing kept");
        assertEq(escrow.deadlineGrace(), 30 days, "grace kept");
        assertTrue(!escrow.paused(), "pause flag kept");
        assertEq(escrow.getJob(2).deadline, START_TIME + 3600 + 30 days, "deadline with max grace");
    }

    function test_setTreasury_zero_reverts() public {
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.ZeroAddress.selector));
        escrow.setTreasury(address(0));
        assertEq(escrow.treasury(), admin, "unchanged");
    }

    // ------------------------------------------------------------------ access control

    function test_operatorFunctions_requireOperatorRole() public {
        uint256 jobId = _submitTypical(alice);
        address[3] memory callers = [alice, admin, stranger]; // the admin is not an operator
        for (uint256 i; i < callers.length; ++i) {
            bytes memory err = abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, callers[i], OPERATOR_ROLE
            );
            vm.startPrank(callers[i]);
            vm.expectRevert(err);
            escrow.acceptJob(jobId, REMOTE_ID);
            vm.expectRevert(err);
            escrow.markRunning(jobId);
            vm.expectRevert(err);
            escrow.completeJob(jobId, RESULT_HASH, RESULT_URI);
            vm.expectRevert(err);
            escrow.failJob(jobId, "no");
            vm.expectRevert(err);
            escrow.applyUpdates(new IJobEscrow.Update[](0));
            vm.stopPrank();
        }
        _assertJob(jobId, alice, IJobEscrow.Status.Submitted, PRICE, 0);
    }

    function test_adminFunctions_requireAdminRole() public {
        address[2] memory callers = [operator, alice];
        for (uint256 i; i < callers.length; ++i) {
            bytes memory err = abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, callers[i], DEFAULT_ADMIN_ROLE
            );
            vm.startPrank(callers[i]);
            vm.expectRevert(err);
            escrow.setPricing(IJobEscrow.Pricing(0, 0, 0));
            vm.expectRevert(err);
            escrow.setLimits(_defaultLimits(), 0);
            vm.expectRevert(err);
            escrow.setTreasury(callers[i]);
            vm.expectRevert(err);
            escrow.pause();
            vm.expectRevert(err);
            escrow.unpause();
            vm.expectRevert(err);
            escrow.grantRole(OPERATOR_ROLE, callers[i]);
            vm.expectRevert(err);
            escrow.revokeRole(OPERATOR_ROLE, operator);
            vm.stopPrank();
        }
        assertEq(escrow.treasury(), admin, "treasury unchanged");
        assertTrue(escrow.hasRole(OPERATOR_ROLE, operator), "operator kept");
    }

    function test_revokedOperator_cannotWrite() public {
        uint256 jobId = _submitTypical(alice);
        vm.prank(admin);
        escrow.revokeRole(OPERATOR_ROLE, operator);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, operator, OPERATOR_ROLE)
        );
        escrow.acceptJob(jobId, REMOTE_ID);
    }

    // ------------------------------------------------------------------ pausing

    function test_pause_stopsOnlySubmit() public {
        uint256 submitted = _submitTypical(alice);
        uint256 accepted = _jobIn(IJobEscrow.Status.Accepted);
        uint256 running = _jobIn(IJobEscrow.Status.Running);
        uint256 toFail = _jobIn(IJobEscrow.Status.Running);
        uint256 toExpire = _jobIn(IJobEscrow.Status.Accepted);
        uint256 toBatch = _jobIn(IJobEscrow.Status.Accepted);

        vm.expectEmit(true, true, true, true, address(escrow));
        emit Pausable.Paused(admin);
        vm.prank(admin);
        escrow.pause();
        assertTrue(escrow.paused(), "paused()");

        IJobEscrow.JobSpec memory spec = Specs.typical();
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(Pausable.EnforcedPause.selector));
        escrow.submitJob{value: PRICE}(spec, 0);

        // The requester can still cancel, at once or by request.
        vm.startPrank(alice);
        escrow.cancelJob(submitted);
        escrow.cancelJob(accepted);
        vm.stopPrank();
        // The operator can still write every status.
        _run(accepted);
        _operatorCancel(accepted);
        _complete(running);
        _fail(toFail);
        IJobEscrow.Update[] memory updates = new IJobEscrow.Update[](1);
        updates[0] = _update(toBatch, IJobEscrow.Status.Completed, RESULT_HASH, RESULT_URI);
        vm.prank(operator);
        escrow.applyUpdates(updates);
        // Anyone can still reclaim.
        vm.warp(escrow.getJob(toExpire).deadline + 1);
        escrow.reclaimExpired(toExpire);
        // And everyone can withdraw.
        vm.prank(alice);
        escrow.withdraw();
        vm.prank(admin);
        escrow.withdraw();

        _assertJob(submitted, alice, IJobEscrow.Status.Cancelled, 0, 0);
        _assertJob(accepted, alice, IJobEscrow.Status.Cancelled, 0, 0);
        _assertJob(running, alice, IJobEscrow.Status.Completed, 0, RESULT_HASH);
        _assertJob(toFail, alice, IJobEscrow.Status.Failed, 0, 0);
        _assertJob(toExpire, alice, IJobEscrow.Status.Expired, 0, 0);
        _assertJob(toBatch, alice, IJobEscrow.Status.Completed, 0, RESULT_HASH);
        assertEq(address(escrow).balance, 0, "everything paid out while paused");

        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(Pausable.EnforcedPause.selector));
        escrow.pause();

        vm.expectEmit(true, true, true, true, address(escrow));
        emit Pausable.Unpaused(admin);
        vm.prank(admin);
        escrow.unpause();
        assertTrue(!escrow.paused(), "unpaused");
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(Pausable.ExpectedPause.selector));
        escrow.unpause();
        assertEq(_submit(bob, spec, 0, PRICE), 7, "submits again");
    }

    // ------------------------------------------------------------------ helpers

    function _defaultLimits() internal pure returns (IJobEscrow.Limits memory) {
        return IJobEscrow.Limits({
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
        });
    }
}
