"""``ce-bridge config check``: validate the configuration and reach every dependency.

``run_checks`` returns one line per problem (empty: all good). It never raises for a problem it
can describe, and no line contains a secret. A ``BRIDGE_*`` variable or TOML key that is no
setting (a misspelling, most likely) is a problem here, with the close matches suggested.
"""

from __future__ import annotations

from pathlib import Path

from web3 import Web3

from bridge.chain.deploy import OPERATOR_ROLE, connect, escrow
from bridge.config import Settings, load_settings, unknown_settings
from bridge.errors import BridgeError, ConfigError, RemoteAuthError, RemoteError
from bridge.remote.client import CEClient
from bridge.store.db import open_database


def run_checks(config_file: Path | None = None) -> list[str]:
    """Every problem with the configuration and the services it names, one line each."""
    try:
        unknown = unknown_settings(config_file)
        settings = load_settings(config_file)
        settings.operator_account  # noqa: B018 - decrypts the keystore, if that is the source
    except ConfigError as exc:
        return [part.strip() for part in str(exc).split("; ")]
    checks = [*_check_rpc(settings), *_check_database(settings), *_check_ce(settings)]
    return [*unknown, *checks]


def _check_rpc(settings: Settings) -> list[str]:
    w3 = connect(settings.rpc_url, timeout=10)
    try:
        w3.eth.chain_id  # noqa: B018 - the call is the check
    except Exception:
        return [f"BRIDGE_RPC_URL: cannot reach a JSON-RPC node at {settings.rpc_url}"]
    problems = []
    address = Web3.to_checksum_address(settings.contract_address)
    if not w3.eth.get_code(address):
        problems.append(f"BRIDGE_CONTRACT_ADDRESS: no contract at {address} on this chain")
        return problems
    operator = settings.operator_address
    try:
        if not escrow(w3, address).functions.hasRole(OPERATOR_ROLE, operator).call():
            problems.append(
                f"BRIDGE_OPERATOR_KEY: {operator} lacks OPERATOR_ROLE "
                "(ce-bridge admin grant-operator)"
            )
    except Exception:
        problems.append(f"BRIDGE_CONTRACT_ADDRESS: {address} is not a JobEscrow")
    if w3.eth.get_balance(Web3.to_checksum_address(operator)) == 0:
        problems.append(f"operator {operator} has no ETH for gas")
    return problems


def _check_database(settings: Settings) -> list[str]:
    try:
        open_database(settings.database_url).dispose()
    except BridgeError as exc:
        return [f"BRIDGE_DATABASE_URL: {exc}"]
    return []


def _check_ce(settings: Settings) -> list[str]:
    try:
        with CEClient(
            settings.ce_url, settings.ce_authenticator.get_secret_value(), timeout=10
        ) as client:
            client.ping()
    except RemoteAuthError:
        return ["BRIDGE_CE_AUTHENTICATOR: CE rejected the authenticator (401)"]
    except (RemoteError, ConfigError) as exc:
        return [f"BRIDGE_CE_URL: cannot reach CE at {settings.ce_url}: {exc}"]
    return []
