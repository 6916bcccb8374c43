"""The pure rules of issue 13: finality targets, fees from fee history, legacy fees, the cost of a
write, the providers' eth_getLogs and refusal wordings, and the settings that choose them."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bridge.chain.finality import Finality
from bridge.chain.rpc import LOG_LIMIT_WORDINGS, FailoverProvider, is_log_limit, is_refusal
from bridge.config import load_settings
from bridge.errors import ConfigError
from bridge.logs import install_redaction
from bridge.tx.policy import Fees, bumped_fees, legacy_fees, tip_from_history, write_cost

GWEI = 10**9
BASE: dict[str, Any] = {
    "contract_address": "0x" + "11" * 20,
    "operator_key": "0x" + "22" * 32,
    "ce_authenticator": "secret",
}


# ---------------------------------------------------------------------------- finality


def test_a_count_reads_that_many_blocks_behind_the_head() -> None:
    assert Finality.of(2).target(100) == 98
    assert Finality.of(0).target(100) == 100
    assert "2 blocks behind the head" in Finality.of(2).describe()


@pytest.mark.parametrize("tag", ["safe", "finalized"])
def test_a_tag_reads_up_to_the_nodes_block_never_past_the_head(tag: str) -> None:
    finality = Finality.of(tag)
    assert finality.tag == tag
    assert finality.target(100, 36) == 36
    assert finality.target(100, 140) == 100  # a tag above the head is not believed
    assert finality.target(100, None) == -1  # no such block yet: nothing is final
    assert finality.describe(100, 36) == (
        f"confirmations: the node's `{tag}` block (36, 64 blocks behind head 100)"
    )


def test_confirmations_take_a_count_or_a_tag() -> None:
    assert load_settings(**BASE, rpc_url="http://n", confirmations="12").confirmations == 12
    settings = load_settings(**BASE, rpc_url="http://n", confirmations=" Safe ")
    assert settings.finality_tag == "safe" and settings.confirmation_depth == 0
    for bad in ("latest", "-1", "1.5"):
        with pytest.raises(ConfigError, match="BRIDGE_CONFIRMATIONS: expected a number of blocks"):
            load_settings(**BASE, rpc_url="http://n", confirmations=bad)


# ---------------------------------------------------------------------------- fees


def test_the_tip_is_the_median_of_the_percentile_over_blocks_with_transactions() -> None:
    rewards = [[3 * GWEI], [0], [1 * GWEI], [2 * GWEI], [9 * GWEI]]
    ratios = [0.5, 0.0, 0.3, 0.9, 0.1]
    assert tip_from_history(rewards, ratios, ceiling=100 * GWEI) == 2 * GWEI + GWEI // 2
    assert tip_from_history(rewards, ratios, ceiling=GWEI) == GWEI
    assert tip_from_history([[0], [0]], [0.0, 0.0], ceiling=GWEI) is None  # empty blocks only
    assert tip_from_history([], [], ceiling=GWEI) is None


def test_legacy_fees_are_one_capped_price_and_bump_like_any_other() -> None:
    fees = legacy_fees(30 * GWEI, cap=100 * GWEI)
    assert fees == Fees(30 * GWEI, 30 * GWEI)
    assert legacy_fees(300 * GWEI, cap=100 * GWEI) == Fees(100 * GWEI, 100 * GWEI)
    bumped = bumped_fees(fees, fees, 25, cap=100 * GWEI)
    assert bumped is not None
    assert bumped.max_fee_per_gas == bumped.max_priority_fee_per_gas == 37_500_000_000


def test_a_write_costs_its_gas_at_the_max_fee_plus_the_l1_fee() -> None:
    assert write_cost(100_000, 2 * GWEI) == 200_000 * GWEI
    assert write_cost(100_000, 2 * GWEI, l1_fee=12_345) == 200_000 * GWEI + 12_345


# ---------------------------------------------------------------------------- RPC wordings


#: Messages as the providers send them (their documentation and forum threads).
PROVIDER_LIMITS = [
    "query returned more than 10000 results",  # geth
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range "
    "and no limit on the response size, or you can request any block range with a cap of 10K "
    "logs in the response.",  # Alchemy
    "query exceeds max block range 100000",  # Alchemy
    "query returned more than 10000 results. Try with this block range [0x1, 0x2].",  # Infura
    "eth_getLogs is limited to a 10,000 range",  # QuickNode
    "eth_getLogs and eth_newFilter are limited to a 10000 blocks range",  # QuickNode
    "block range is too wide",  # Ankr
    "Requested too many blocks from 0 to 100000, maximum is set to 1000",  # Ankr
    "exceed maximum block range: 5000",  # NodeReal
    "block range limit exceeded",  # Chainstack
    "query timeout exceeded",  # Erigon
]


@pytest.mark.parametrize("message", PROVIDER_LIMITS)
def test_each_providers_log_limit_wording_shrinks_the_range(message: str) -> None:
    assert is_log_limit(message)
    assert is_log_limit(message.upper())


@pytest.mark.parametrize(
    "message", ["execution reverted", "invalid params", "internal error", "connection refused"]
)
def test_other_errors_are_not_log_limits(message: str) -> None:
    assert not is_log_limit(message)


def test_the_wordings_are_kept_in_one_place_by_provider() -> None:
    assert {"Alchemy", "Infura", "QuickNode", "Ankr"} <= set(LOG_LIMIT_WORDINGS)


@pytest.mark.parametrize(
    "error",
    [
        {"code": -32005, "message": "daily request count exceeded, request rate limited"},
        {"code": 429, "message": "Too Many Requests"},
        {"code": -32601, "message": "the method eth_feeHistory does not exist/is not available"},
        {"code": -32000, "message": "Your app has exceeded its compute units per second capacity"},
        {"code": -32000, "message": "header not found"},
        "project ID does not have access to this network",
    ],
)
def test_refusals_send_the_request_to_the_next_endpoint(error: object) -> None:
    assert is_refusal(error)


@pytest.mark.parametrize(
    "error",
    [
        {"code": 3, "message": "execution reverted: JobNotFound(7)"},
        {"code": -32000, "message": "nonce too low"},
        {"code": -32000, "message": "insufficient funds for gas * price + value"},
        {"code": -32000, "message": "replacement transaction underpriced"},
        {"code": -32000, "message": "already known"},
    ],
)
def test_a_nodes_verdict_is_passed_on_not_failed_over(error: object) -> None:
    assert not is_refusal(error)


# ---------------------------------------------------------------------------- URLs


def test_several_urls_are_read_in_order_and_one_still_works() -> None:
    settings = load_settings(**BASE, rpc_urls=" https://a.example/v3/k1 ,https://b.example ")
    assert settings.rpc_endpoints == ("https://a.example/v3/k1", "https://b.example")
    assert settings.rpc_endpoint == "https://a.example/v3/k1"
    assert load_settings(**BASE, rpc_url="http://n").rpc_endpoints == ("http://n",)
    with pytest.raises(ConfigError, match=r"BRIDGE_RPC_URLS: .*http:// or https://"):
        load_settings(**BASE, rpc_urls="http://a, ws://b")
    with pytest.raises(ConfigError, match=r"^BRIDGE_RPC_URL is required$"):
        load_settings(**BASE)


def test_the_provider_names_its_endpoints_redacted() -> None:
    provider = FailoverProvider(
        ["https://u:pw-secret-1@a.example/", "https://b.example/v2/abcdefghij0123456789?key=k-2"]
    )
    shown = str(provider) + provider.endpoint_uri + repr(provider.health())
    for secret in ("pw-secret-1", "abcdefghij0123456789", "k-2"):
        assert secret not in shown


def test_redaction_covers_every_url(caplog: pytest.LogCaptureFixture) -> None:
    urls = ["https://a.example/v3/aaaaaaaaaaaaaaaaaaaa", "https://user:pw-bbbb@b.example/"]
    flt = install_redaction(*urls)
    try:
        record = logging.LogRecord("bridge", logging.INFO, __file__, 1, "%s %s", tuple(urls), None)
        flt.filter(record)
        assert "aaaaaaaaaaaaaaaaaaaa" not in record.getMessage()
        assert "pw-bbbb" not in record.getMessage()
    finally:
        for logger in (logging.getLogger("bridge"), logging.getLogger()):
            for handler in logger.handlers:
                handler.removeFilter(flt)
