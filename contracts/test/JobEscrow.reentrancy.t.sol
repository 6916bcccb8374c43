// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IJobEscrow} from "../interfaces/IJobEscrow.sol";
import {ReentrancyAttacker} from "./utils/Consumers.sol";
import {EscrowTest} from "./utils/EscrowTest.sol";
import {Specs} from "./utils/Specs.sol";

/// @notice A reentrancy attacker, as requester (re-entering from `receive` inside withdraw) and as consumer
/// (re-entering from `onJobFinished` inside completeJob, failJob and reclaimExpired), gains nothing: every
/// re-entry is refused with the exact error, or is a legitimate action on its own job, and the escrow's
/// balance stays exactly escrowed payments plus credits.
contract JobEscrowReentrancyTest is EscrowTest {
    uint32 internal constant CALLBACK_GAS = 1_500_000;

    ReentrancyAttacker internal attacker;
    uint256 internal price; // the typical job without a callback
    uint256 internal priceWithCallback;

    function setUp() public override {
        super.setUp();
        attacker = new ReentrancyAttacker(escrow);
        vm.deal(address(this), 100 ether);
        price = _price(Specs.typical(), 0);
        priceWithCallback = _price(Specs.typical(), CALLBACK_GAS);
    }

    // ------------------------------------------------------------------ as requester, from receive()

    function test_reentry_withdrawFromReceive_isRefused() public {
        uint256 mine = _attackerJob(0);
        uint256 theirs = _submitTypical(alice); // someone else's money in the escrow
        attacker.cancel(mine);
        attacker.onReceive(ReentrancyAttacker.Action.Withdraw, 0);

        attacker.withdraw();

        ReentrancyAttacker.Attempt[] memory at = attacker.attempts();
        assertEq(at.length, 1, "one re-entry");
        _assertRefused(at[0], abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector));
        assertEq(address(attacker).balance, price, "got its refund once");
        assertEq(attacker.received(), price, "one transfer");
        assertEq(escrow.creditOf(address(attacker)), 0, "credit cleared");
        assertEq(address(escrow).balance, escrow.getJob(theirs).payment, "only alice's payment left");
        _assertSolvent(_accounts(address(attacker), address(0)));
    }

    function test_reentry_cancelFromReceive_onlyCreditsItsOwnRefund() public {
        uint256 first = _attackerJob(0);
        uint256 second = _attackerJob(0);
        uint256 theirs = _submitTypical(alice);
        attacker.cancel(first);
        attacker.onReceive(ReentrancyAttacker.Action.CancelJob, second); // legitimate: its own job
        attacker.onReceive(ReentrancyAttacker.Action.CancelJob, theirs); // not its job

        attacker.withdraw();

        ReentrancyAttacker.Attempt[] memory at = attacker.attempts();
        assertEq(at.length, 2, "two re-entries");
        assertTrue(at[0].ok, "cancelling its own Submitted job is allowed");
        _assertRefused(at[1], abi.encodeWithSelector(IJobEscrow.NotRequester.selector, theirs, address(attacker)));
        assertEq(address(attacker).balance, price, "paid the first refund only");
        assertEq(escrow.creditOf(address(attacker)), price, "second refund credited, not paid");
        _assertJob(second, address(attacker), IJobEscrow.Status.Cancelled, 0, 0);
        _assertJob(theirs, alice, IJobEscrow.Status.Submitted, price, 0);
        _assertSolvent(_accounts(address(attacker), address(0)));

        attacker.withdraw();
        assertEq(address(attacker).balance, 2 * price, "exactly two refunds in all");
        assertEq(address(escrow).balance, price, "alice's payment intact");
    }

    function test_reentry_reclaimFromReceive_isRefused() public {
        uint256 refunded = _attackerJob(0);
        uint256 late = _attackerJob(0);
        attacker.cancel(refunded);
        vm.warp(escrow.getJob(late).deadline + 1);
        attacker.onReceive(ReentrancyAttacker.Action.ReclaimExpired, late);

        attacker.withdraw();

        _assertRefused(
            attacker.attempts()[0],
            abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)
        );
        _assertJob(late, address(attacker), IJobEscrow.Status.Submitted, price, 0);
        escrow.reclaimExpired(late); // still reclaimable the normal way
        assertEq(escrow.creditOf(address(attacker)), price, "one refund for it");
        _assertSolvent(_accounts(address(attacker), address(0)));
    }

    // ------------------------------------------------------------------ as consumer, from onJobFinished()

    function test_reentry_fromCompletionCallback() public {
        uint256 late = _attackerJob(0);
        vm.warp(escrow.getJob(late).deadline + 1); // `late` can be reclaimed now
        uint256 cancelled = _attackerJob(0);
        attacker.cancel(cancelled); // a credit the attacker would love to withdraw twice
        uint256 pending = _attackerJob(0);
        uint256 victim = _jobIn(IJobEscrow.Status.Running);
        uint256 target = _attackerJob(CALLBACK_GAS);
        _run(target);

        attacker.onCallback(ReentrancyAttacker.Action.Withdraw, 0);
        attacker.onCallback(ReentrancyAttacker.Action.ReclaimExpired, late);
        attacker.onCallback(ReentrancyAttacker.Action.CancelJob, target);
        attacker.onCallback(ReentrancyAttacker.Action.CompleteJob, victim);
        attacker.onCallback(ReentrancyAttacker.Action.FailJob, victim);
        attacker.onCallback(ReentrancyAttacker.Action.ApplyUpdates, victim);
        attacker.onCallback(ReentrancyAttacker.Action.CancelJob, pending);

        _complete(target);

        ReentrancyAttacker.Attempt[] memory at = attacker.attempts();
        assertEq(attacker.callbacks(), 1, "called back once");
        assertEq(at.length, 7, "seven re-entries");
        bytes memory guard = abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector);
        bytes memory notOperator = abi.encodeWithSelector(
            IAccessControl.AccessControlUnauthorizedAccount.selector, address(attacker), OPERATOR_ROLE
        );
        _assertRefused(at[0], guard);
        _assertRefused(at[1], guard);
        _assertRefused(
            at[2],
            abi.encodeWithSelector(
                IJobEscrow.InvalidTransition.selector, target, IJobEscrow.Status.Completed, IJobEscrow.Status.Cancelled
            )
        );
        _assertRefused(at[3], notOperator);
        _assertRefused(at[4], notOperator);
        _assertRefused(at[5], notOperator);
        assertTrue(at[6].ok, "cancelling its own Submitted job is allowed");

        _assertJob(target, address(attacker), IJobEscrow.Status.Completed, 0, RESULT_HASH);
        _assertJob(late, address(attacker), IJobEscrow.Status.Submitted, price, 0);
        _assertJob(victim, alice, IJobEscrow.Status.Running, price, 0);
        _assertJob(pending, address(attacker), IJobEscrow.Status.Cancelled, 0, 0);
        assertEq(address(attacker).balance, 0, "nothing paid out to the attacker");
        assertEq(escrow.creditOf(address(attacker)), 2 * price, "its two refunds, credited once each");
        assertEq(escrow.creditOf(admin), priceWithCallback, "treasury paid once");
        _assertSolvent(_accounts(address(attacker), address(0)));
    }

    function test_reentry_fromCallback_evenWithOperatorRole_isRefused() public {
        vm.prank(admin);
        escrow.grantRole(OPERATOR_ROLE, address(attacker));
        uint256 victim = _jobIn(IJobEscrow.Status.Running);
        uint256 target = _attackerJob(CALLBACK_GAS);
        attacker.onCallback(ReentrancyAttacker.Action.CompleteJob, target);
        attacker.onCallback(ReentrancyAttacker.Action.FailJob, victim);
        attacker.onCallback(ReentrancyAttacker.Action.ApplyUpdates, target);

        _complete(target);

        bytes memory guard = abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector);
        ReentrancyAttacker.Attempt[] memory at = attacker.attempts();
        assertEq(at.length, 3, "three re-entries");
        _assertRefused(at[0], guard);
        _assertRefused(at[1], guard);
        _assertRefused(at[2], guard);
        _assertJob(victim, alice, IJobEscrow.Status.Running, price, 0);
        assertEq(escrow.creditOf(admin), priceWithCallback, "treasury paid once");
        _assertSolvent(_accounts(address(attacker), address(0)));
    }

    function test_reentry_fromFailureCallback() public {
        uint256 target = _attackerJob(CALLBACK_GAS);
        attacker.onCallback(ReentrancyAttacker.Action.Withdraw, 0); // its refund is already credited
        attacker.onCallback(ReentrancyAttacker.Action.CancelJob, target);
        attacker.onCallback(ReentrancyAttacker.Action.ReclaimExpired, target);

        _fail(target);

        bytes memory guard = abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector);
        ReentrancyAttacker.Attempt[] memory at = attacker.attempts();
        _assertRefused(at[0], guard);
        _assertRefused(
            at[1],
            abi.encodeWithSelector(
                IJobEscrow.InvalidTransition.selector, target, IJobEscrow.Status.Failed, IJobEscrow.Status.Cancelled
            )
        );
        _assertRefused(at[2], guard);
        // The operator ran the callback: the callback fee is the treasury's, the rest the attacker's.
        uint256 fee = escrow.pricing().pricePerCallbackGas * uint256(CALLBACK_GAS);
        assertEq(escrow.creditOf(address(attacker)), priceWithCallback - fee, "refunded once");
        assertEq(address(attacker).balance, 0, "nothing paid during the callback");
        attacker.withdraw();
        assertEq(address(attacker).balance, priceWithCallback - fee, "exactly its refund");
        assertEq(address(escrow).balance, escrow.creditOf(admin), "only the treasury's fee left");
    }

    function test_reentry_fromReclaimCallback() public {
        uint256 target = _attackerJob(CALLBACK_GAS);
        vm.warp(escrow.getJob(target).deadline + 1);
        attacker.onCallback(ReentrancyAttacker.Action.ReclaimExpired, target);
        attacker.onCallback(ReentrancyAttacker.Action.Withdraw, 0);
        attacker.onCallback(ReentrancyAttacker.Action.CancelJob, target);

        vm.prank(stranger);
        escrow.reclaimExpired(target);

        bytes memory guard = abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector);
        ReentrancyAttacker.Attempt[] memory at = attacker.attempts();
        _assertRefused(at[0], guard);
        _assertRefused(at[1], guard);
        _assertRefused(
            at[2],
            abi.encodeWithSelector(
                IJobEscrow.InvalidTransition.selector, target, IJobEscrow.Status.Expired, IJobEscrow.Status.Cancelled
            )
        );
        _assertJob(target, address(attacker), IJobEscrow.Status.Expired, 0, 0);
        assertEq(escrow.creditOf(address(attacker)), priceWithCallback, "refunded once");
        _assertSolvent(_accounts(address(attacker), address(0)));
    }

    // ------------------------------------------------------------------ helpers

    function _attackerJob(uint32 callbackGasLimit) internal returns (uint256) {
        IJobEscrow.JobSpec memory spec = Specs.typical();
        return attacker.submit{value: _price(spec, callbackGasLimit)}(spec, callbackGasLimit);
    }

    function _assertRefused(ReentrancyAttacker.Attempt memory attempt, bytes memory err) internal pure {
        assertTrue(!attempt.ok, "re-entry refused");
        assertEq(attempt.err, err, "exact error of the refused re-entry");
    }
}
