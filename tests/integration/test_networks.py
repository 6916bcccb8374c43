"""Real networks, on real Anvil processes: finality by tag (``--slots-in-an-epoch`` moves
``safe`` and ``finalized`` behind the head) with a reorg above the finalized block, fees from
``eth_feeHistory``, a legacy-fee chain (an RPC proxy hides EIP-1559; Anvil's pre-London
hardforks cannot run the contract, which is compiled for Cancun), an OP-stack chain's L1 data
fee (``anvil --network optimism``), and the raw-key warning on a non-development chain.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from hexbytes import HexBytes
from sqlmodel import Session, col, select
from typer.testing import CliRunner
from web3 import Web3
from web3.exceptions import TransactionNotFound
from web3.types import RPCEndpoint, TxParams, Wei

from bridge.chain.deploy import connect, deploy_escrow
from bridge.chain.finality import Finality, FinalityTag, tagged_block
from bridge.chain.spec import Status
from bridge.checks import describe_settings, find_problems
from bridge.cli import app
from bridge.config import load_settings
from bridge.devchain import Anvil, rpc
from bridge.devstack import LocalStack
from bridge.store.models import ChainTx, Job, TxState
from bridge.tx.fees import GAS_PRICE_ORACLE, FeeOracle
from bridge.tx.policy import write_cost
from tests.builders import Accounts
from tests.faults.harness import (
    Workload,
    bridge_env,
    emulator_stats,
    wait_for,
    writes_settled,
)
from tests.faults.rpc_proxy import RpcFaultProxy

GWEI = 10**9
SLOTS = 4  # Anvil: safe = head - SLOTS, finalized = head - 2 * SLOTS


def _mine(w3: Web3, blocks: int = 1) -> None:
    w3.provider.make_request(RPCEndpoint("anvil_mine"), [hex(blocks)])


def _metric(api_url: str, name: str) -> float:
    text = httpx.get(f"{api_url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _cursor(stack: LocalStack) -> int | None:
    assert stack.bridge is not None
    from bridge.store.models import ScanCursor

    with Session(stack.bridge.db) as session:
        row = session.get(ScanCursor, stack.settings.contract_address)
        return None if row is None else row.block


def _job_stored(stack: LocalStack, job_id: int) -> bool:
    assert stack.bridge is not None
    with Session(stack.bridge.db) as session:
        return session.get(Job, job_id) is not None


@pytest.mark.parametrize("tag", ["finalized", "safe"])
def test_a_tag_mode_reads_up_to_the_tagged_block_and_a_reorg_above_it_is_never_seen(
    tmp_path: Path, tag: FinalityTag
) -> None:
    behind = 2 * SLOTS if tag == "finalized" else SLOTS
    with LocalStack(
        tmp_path,
        block_time=None,  # automine: the test moves the chain
        confirmations=tag,
        anvil_args=("--slots-in-an-epoch", str(SLOTS)),
        start_bridge=False,
    ) as stack:
        w3 = stack.w3
        _mine(w3, 3 * SLOTS)
        finality = Finality.of(stack.settings.confirmations)
        head = int(w3.eth.block_number)
        tagged = tagged_block(w3, tag)
        assert tagged == head - behind and finality.target(head, tagged) == tagged
        lines = describe_settings(stack.settings)
        assert f"the node's `{tag}` block ({tagged}, {behind} blocks behind" in (
            "\n".join(lines)
        ), lines
        checked = CliRunner().invoke(app, ["config", "check"], env=bridge_env(stack.settings))
        said = " ".join(checked.output.split())
        assert checked.exit_code == 0 and f"the node's `{tag}` block" in said, checked.output
        assert f"{behind} blocks behind head" in said
        stack.start_bridge()
        work = Workload(stack)

        # A job above the tagged block: the scanner reaches the tagged block, not it.
        (doomed,) = work.submit(["ok"])
        tagged = tagged_block(w3, tag)
        assert tagged is not None and tagged < doomed.block
        wait_for(lambda: _cursor(stack) == tagged, 60, "the scan to reach the tagged block")
        assert not _job_stored(stack, doomed.job_id)
        pending = httpx.get(f"{stack.api_url}/jobs/{doomed.job_id}", timeout=10).json()
        assert pending["state"] == "pending" and pending["confirmations_required"] == behind
        assert _metric(stack.api_url, "ce_bridge_finality_lag_blocks") == behind
        assert _metric(stack.api_url, "ce_bridge_finalized_lag_blocks") == 2 * SLOTS

        # Reorg the last 2 blocks (above the tag): the submission is gone, never acted on.
        rpc(stack.anvil.url, "anvil_reorg", [2, []])  # type: ignore[union-attr]
        with pytest.raises(TransactionNotFound):
            w3.eth.get_transaction_receipt(HexBytes(doomed.tx_hash))

        # A new job takes the same id with another spec; once final, it is the one that runs.
        (job,) = work.submit(["ok"])
        assert job.job_id == doomed.job_id
        wait_for(
            lambda: (
                work.status(job.job_id).is_terminal and writes_settled(stack.settings.database_url)
            ),
            120,
            "the job to complete and its writes to be final",
            between=lambda: _mine(w3),
            interval=0.2,
        )
        assert work.status(job.job_id) == Status.COMPLETED
        stats = emulator_stats(stack)
        assert stats["jobs"] == 1, stats  # one remote job: the doomed submission never ran
        assert stack.bridge is not None
        with Session(stack.bridge.db) as session:
            stored = session.get(Job, job.job_id)
            assert stored is not None and stored.tx_hash == job.tx_hash


def test_fees_come_from_the_fee_history_percentile_with_a_ceiling(
    chain: Web3, accounts: Accounts
) -> None:
    for tip_gwei in (1, 2, 3):  # one transaction per block (automine), each its own tip
        block = chain.eth.get_block("latest")
        base = int(block["baseFeePerGas"])
        tx: TxParams = {
            "from": accounts.user,
            "to": accounts.other,
            "value": Wei(1),
            "maxPriorityFeePerGas": Wei(tip_gwei * GWEI),
            "maxFeePerGas": Wei(2 * base + tip_gwei * GWEI),
        }
        chain.eth.wait_for_transaction_receipt(chain.eth.send_transaction(tx))
    oracle = FeeOracle(chain, max_fee_wei=500 * GWEI, percentile=50, history_blocks=3)
    fees = oracle.market()
    assert not oracle.legacy and not oracle.op_stack
    assert fees.max_priority_fee_per_gas == 2 * GWEI  # the median of 1, 2 and 3 gwei
    history = chain.eth.fee_history(1, "latest", [])
    next_base = int(history["baseFeePerGas"][-1])
    assert fees.max_fee_per_gas == 2 * next_base + 2 * GWEI
    capped = FeeOracle(
        chain, max_fee_wei=500 * GWEI, max_tip_wei=GWEI + GWEI // 2, history_blocks=3
    )
    assert capped.market().max_priority_fee_per_gas == GWEI + GWEI // 2
    ceiling = FeeOracle(chain, max_fee_wei=GWEI, history_blocks=3).market()
    assert ceiling.max_fee_per_gas == GWEI and ceiling.max_priority_fee_per_gas <= GWEI


def test_a_legacy_fee_chain_gets_type_0_transactions(tmp_path: Path) -> None:
    with LocalStack(tmp_path, block_time=None, confirmations=1, start_bridge=False) as stack:
        assert stack.anvil is not None
        with RpcFaultProxy(stack.anvil.url) as proxy:
            proxy.hide_1559 = True
            stack.settings = stack.settings.model_copy(update={"rpc_url": proxy.url})
            legacy_w3 = connect(proxy.url)
            oracle = FeeOracle(legacy_w3, max_fee_wei=500 * GWEI)
            assert oracle.legacy
            fees = oracle.market()
            assert (
                fees.max_fee_per_gas == fees.max_priority_fee_per_gas == int(stack.w3.eth.gas_price)
            )
            lines = describe_settings(stack.settings)
            assert any("legacy gasPrice" in line for line in lines), lines
            stack.start_bridge()
            status = _one_job_to_its_end(stack, "through the legacy chain")
            assert status.name == "COMPLETED"
            assert proxy.refused["eth_sendRawTransaction"] == 0  # never a typed transaction
            assert stack.bridge is not None
            with Session(stack.bridge.db) as session:
                txs = session.exec(select(ChainTx)).all()
            assert txs and all(t.raw_tx and t.raw_tx.startswith("0xf") for t in txs)
            for t in txs:
                mined = stack.w3.eth.get_transaction(HexBytes(str(t.tx_hash)))
                assert int(mined["type"]) == 0 and mined["gasPrice"] == t.max_fee_per_gas


def _one_job_to_its_end(stack: LocalStack, where: str) -> Status:
    """Submits one ordinary job, mines until it is terminal and its writes are confirmed, and
    returns its on-chain status."""
    work = Workload(stack)
    (job,) = work.submit(["ok"])
    wait_for(
        lambda: work.status(job.job_id).is_terminal and writes_settled(stack.settings.database_url),
        120,
        f"the job to complete {where}",
        between=lambda: _mine(stack.w3),
        interval=0.2,
    )
    return work.status(job.job_id)


#: A stand-in for the OP-stack GasPriceOracle, which ``anvil --network optimism`` does not
#: deploy: ``getL1Fee(bytes)`` answers CALLDATASIZE * 1000 wei (grows with the data, like the
#: real one). Bytecode: CALLDATASIZE PUSH2 1000 MUL PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN.
ORACLE_CODE = "0x366103e80260005260206000f3"


def _oracle_fee(raw_tx: str) -> int:
    size = len(HexBytes(raw_tx))
    return (4 + 32 + 32 + -(-size // 32) * 32) * 1000  # getL1Fee's ABI-encoded call data


def test_an_op_stack_write_costs_its_l1_data_fee_too(tmp_path: Path) -> None:
    with LocalStack(
        tmp_path,
        block_time=None,
        confirmations=1,
        start_bridge=False,
        anvil_args=("--network", "optimism"),
    ) as stack:
        assert stack.anvil is not None
        rpc(stack.anvil.url, "anvil_setCode", [GAS_PRICE_ORACLE, ORACLE_CODE])
        lines = describe_settings(stack.settings)
        assert any("OP-stack chain" in line for line in lines), lines
        bridge = stack.start_bridge()
        _one_job_to_its_end(stack, "on the OP-stack chain")
        with Session(bridge.db) as session:
            txs = session.exec(select(ChainTx).where(col(ChainTx.state) == TxState.CONFIRMED)).all()
        assert txs
        for t in txs:
            assert t.raw_tx is not None and t.gas_used is not None
            receipt = stack.w3.eth.get_transaction_receipt(HexBytes(str(t.tx_hash)))
            l1 = _oracle_fee(t.raw_tx)
            assert t.l1_fee_wei == l1 > 0
            assert t.fee_paid_wei == t.gas_used * int(receipt["effectiveGasPrice"]) + l1
        total_l1 = sum(int(t.l1_fee_wei or 0) for t in txs)
        assert _metric(stack.api_url, "ce_bridge_data_fees_paid_wei_total") == total_l1
        assert _metric(stack.api_url, "ce_bridge_fees_paid_wei_total") == sum(
            int(t.fee_paid_wei or 0) for t in txs
        )
        # The balance alert names what a write needs, L1 fee included.
        alert = str(bridge.tx._insufficient_funds(txs[0]))
        need = write_cost(txs[0].gas_limit, txs[0].max_fee_per_gas, _oracle_fee(str(txs[0].raw_tx)))
        assert f"needs up to {need} wei" in alert


def test_config_check_warns_of_a_raw_key_on_a_chain_that_is_not_for_development(
    accounts: Accounts,
) -> None:
    def key_warnings(chain_id: int) -> list[str]:
        with Anvil(chain_id=chain_id) as node:
            w3 = connect(node.url, accounts.keys)
            address = deploy_escrow(w3, accounts.admin, operators=[accounts.operator])
            settings = load_settings(
                rpc_url=node.url,
                contract_address=address,
                operator_key=accounts.keys[1],
                ce_url="http://127.0.0.1:9",
                ce_authenticator="x",
                database_url="sqlite:///:memory:",
            )
            return [p.line for p in find_problems(settings) if "raw private key" in p.line]

    (line,) = key_warnings(11155111)  # Sepolia's chain id
    assert line.startswith("BRIDGE_OPERATOR_KEY:") and "chain 11155111" in line
    assert "BRIDGE_OPERATOR_KEYSTORE" in line and accounts.keys[1][2:] not in line
    assert key_warnings(31337) == []
