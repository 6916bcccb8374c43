// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {JobEscrow} from "../JobEscrow.sol";
import {IJobEscrow} from "../interfaces/IJobEscrow.sol";
import {Assertions} from "./utils/Assertions.sol";
import {JobEscrowHandler} from "./utils/JobEscrowHandler.sol";
import {Vm} from "./utils/Vm.sol";

/// @notice Invariants of the escrow under random sequences of every user, operator and time action
/// (foundry.toml: 256 runs of depth 50), driven by JobEscrowHandler.
contract JobEscrowInvariantTest is Assertions {
    /// @dev forge's selector filter: the handler's actions, not its ghost getters.
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    JobEscrow internal escrow;
    JobEscrowHandler internal handler;

    function setUp() public {
        vm.warp(1_700_000_000);
        address admin = address(uint160(uint256(keccak256("admin"))));
        address operator = address(uint160(uint256(keccak256("operator"))));
        escrow = new JobEscrow(admin);
        handler = new JobEscrowHandler(escrow, admin, operator);
        vm.prank(admin);
        escrow.grantRole(keccak256("OPERATOR_ROLE"), operator);
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory targets) {
        bytes4[] memory selectors = new bytes4[](13);
        selectors[0] = JobEscrowHandler.submit.selector;
        selectors[1] = JobEscrowHandler.submit.selector; // submitting twice as often keeps jobs coming
        selectors[2] = JobEscrowHandler.cancel.selector;
        selectors[3] = JobEscrowHandler.reclaim.selector;
        selectors[4] = JobEscrowHandler.withdraw.selector;
        selectors[5] = JobEscrowHandler.warp.selector;
        selectors[6] = JobEscrowHandler.accept.selector;
        selectors[7] = JobEscrowHandler.markRunning.selector;
        selectors[8] = JobEscrowHandler.complete.selector;
        selectors[9] = JobEscrowHandler.fail.selector;
        selectors[10] = JobEscrowHandler.operatorCancel.selector;
        selectors[11] = JobEscrowHandler.batch.selector;
        selectors[12] = JobEscrowHandler.reprice.selector;
        targets = new FuzzSelector[](1);
        targets[0] = FuzzSelector(address(handler), selectors);
    }

    /// @notice The contract's own invariant: its balance is exactly the escrowed payments of all jobs plus
    /// the credits of every account.
    function invariant_balanceIsEscrowedPlusCredited() public view {
        uint256 escrowed;
        uint256 n = handler.jobCount();
        for (uint256 id = 1; id <= n; ++id) {
            escrowed += escrow.getJob(id).payment;
        }
        uint256 credited;
        address[] memory accounts = handler.accounts();
        for (uint256 i; i < accounts.length; ++i) {
            credited += escrow.creditOf(accounts[i]);
        }
        assertEq(address(escrow).balance, escrowed + credited, "balance == sum(payment) + sum(creditOf)");
        assertEq(escrowed, handler.ghostEscrowed(), "escrowed == ghost escrowed");
        assertEq(credited, handler.ghostCredited(), "credited == ghost credited");
        assertEq(address(escrow).balance, handler.ghostDeposited() - handler.ghostWithdrawn(), "balance == in - out");
    }

    /// @notice Every account's credit is exactly what the ghost books say it is owed (overpayments, refunds
    /// of its own settled jobs by the money rules, or the treasury's earnings), and every withdrawal paid
    /// exactly that.
    function invariant_creditsMatchGhostBooks() public view {
        address[] memory accounts = handler.accounts();
        for (uint256 i; i < accounts.length; ++i) {
            assertEq(escrow.creditOf(accounts[i]), handler.ghostCredit(accounts[i]), "creditOf == ghost credit");
        }
        assertEq(handler.wrongWithdrawals(), 0, "every withdrawal paid exactly the credit");
        assertEq(
            handler.wrongSubmissions(), 0, "every in-bound submission accepted, escrowing the quote under the next id"
        );
    }

    /// @notice No job pays out twice: each is settled at most once, a settled job has a terminal status and
    /// payment 0 (a Completed one its result hash), an unsettled one still escrows its quote.
    function invariant_eachJobSettlesOnce() public view {
        uint256 n = handler.jobCount();
        assertEq(escrow.nextJobId(), n + 1, "every job is known to the handler");
        for (uint256 id = 1; id <= n; ++id) {
            IJobEscrow.Job memory job = escrow.getJob(id);
            uint256 settled = handler.settledCount(id);
            assertLe(settled, 1, "settled at most once");
            bool terminal = job.status >= IJobEscrow.Status.Completed;
            assertEq(settled == 1, terminal, "settled <=> terminal status");
            if (terminal) {
                assertEq(job.payment, 0, "a settled job escrows nothing");
                assertEq(job.status == IJobEscrow.Status.Completed, job.resultHash != 0, "resultHash iff Completed");
            } else {
                assertEq(job.payment, handler.paid(id), "an open job escrows its quote");
                assertEq(job.resultHash, bytes32(0), "no resultHash before Completed");
            }
        }
    }

    /// @notice Status only moves forward and never leaves a terminal status.
    function invariant_statusOnlyMovesForward() public view {
        assertEq(handler.statusRegressions(), 0, "status regressions");
        uint256 n = handler.jobCount();
        for (uint256 id = 1; id <= n; ++id) {
            assertEq(escrow.getJob(id).status, handler.lastStatus(id), "handler saw the latest status");
        }
    }
}
