"""The checks ``ce-bridge config check`` prints and ``ce-bridge run`` makes before it starts.

``find_problems`` returns one ``Problem`` per thing wrong with the configuration and the
services it names, each marked:

- **permanent** (the default): no contract at the address, a contract that is not a JobEscrow,
  an operator key without ``OPERATOR_ROLE``, a database bound to another chain or contract, a
  rejected CE authenticator, a database that does not exist. Retrying cannot help.
- **transient**: the node, the database or CE cannot be reached right now.
- **warning**: worth saying, not a reason to stop (an operator account with no ETH yet; a raw
  key from the environment on a chain that is not a development chain).

``describe_setup`` is the facts ``config check`` prints besides: the finality mode and how far
behind the head the scanner reads, the fee mode (EIP-1559, legacy, OP-stack L1 fee), the RPC
endpoints (redacted).

``run_checks`` is ``config check``: every line, and a ``BRIDGE_*`` variable or TOML key that is no
setting (a misspelling, most likely) with the close matches suggested. ``start_bridge`` is
``run``'s start-up: it takes the process lock (on PostgreSQL, a key whose writer another
process holds starts as its standby), stops at the first permanent problem with one line
(``ConfigError``, or the SQLite lock's ``AlreadyRunning``), and waits out transient ones with
one log line per back-off (1 s doubling to 30 s) until the services answer. No line contains a
secret: RPC URLs go through ``redact_url``, database URLs lose their password.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError
from web3 import Web3
from web3.exceptions import Web3Exception, Web3RPCError

from bridge.chain.deploy import OPERATOR_ROLE, connect, escrow
from bridge.chain.finality import Finality, tagged_block
from bridge.config import Settings, load_settings, unknown_settings
from bridge.errors import (
    BridgeError,
    ConfigError,
    RemoteAuthError,
    RemoteError,
    RemoteTransient,
    RpcUnavailable,
    StoreUnavailable,
)
from bridge.logs import redact_url
from bridge.remote.client import CEClient
from bridge.retry import Backoff
from bridge.store import control
from bridge.store.db import describe_db_error, open_database, shown_url
from bridge.store.locks import ProcessLock, acquire_process_lock
from bridge.tx.fees import FeeOracle

if TYPE_CHECKING:
    from bridge.engine.service import Bridge

log = logging.getLogger("bridge.start")

#: Chain ids of development chains (Anvil and Hardhat 31337, Ganache and geth --dev 1337):
#: a raw key in the environment is fine there, and warned about anywhere else.
DEV_CHAIN_IDS = frozenset({31337, 1337, 1338, 5777})


@dataclass(frozen=True)
class Problem:
    """One thing wrong, as one line."""

    line: str
    transient: bool = False  # a service that does not answer now: retrying may fix it
    warning: bool = False  # said, but not a reason to stop


def run_checks(config_file: Path | None = None) -> list[str]:
    """Every problem with the configuration and the services it names, one line each."""
    try:
        unknown = unknown_settings(config_file)
        settings = load_settings(config_file)
        settings.operator_account  # noqa: B018 - decrypts the keystore, if that is the source
    except ConfigError as exc:
        return [part.strip() for part in str(exc).split("; ")]
    return [*unknown, *(problem.line for problem in find_problems(settings))]


def find_problems(settings: Settings, *, migrate_apart: bool = False) -> list[Problem]:
    """Checks the node and the contract, the database (and what it is bound to), and CE.

    ``migrate_apart``: a migration that is due runs in a child process
    (``bridge.store.db.open_database``), as ``run``'s start-up wants it."""
    rpc, chain_id = _check_rpc(settings)
    database = _check_database(settings, chain_id, migrate_apart=migrate_apart)
    return [*rpc, *database, *_check_ce(settings)]


def _check_rpc(settings: Settings) -> tuple[list[Problem], int | None]:
    """Problems with the node and the contract, and the node's chain id (None: unreachable)."""
    node = ", ".join(redact_url(url) for url in settings.rpc_endpoints)
    w3 = connect(settings.rpc_endpoints, timeout=10, max_lag=settings.rpc_max_lag)
    try:
        chain_id = int(w3.eth.chain_id)
    except Exception:  # web3 and requests raise many types; each means the node did not answer
        return [Problem(f"BRIDGE_RPC_URL: cannot reach a JSON-RPC node at {node}", True)], None
    address = Web3.to_checksum_address(settings.contract_address)
    operator = settings.operator_address
    try:
        if not w3.eth.get_code(address):
            line = f"BRIDGE_CONTRACT_ADDRESS: no contract at {address} on chain {chain_id}"
            return [Problem(line)], chain_id
        contract = escrow(w3, address)
        try:
            role = bytes(contract.functions.OPERATOR_ROLE().call())
            contract.functions.limits().call()
        except (OSError, Web3RPCError):
            raise
        except (Web3Exception, ValueError):  # a revert, or an answer that does not decode
            role = b""
        if role != OPERATOR_ROLE:
            line = (
                f"BRIDGE_CONTRACT_ADDRESS: the contract at {address} is not a JobEscrow "
                "(OPERATOR_ROLE() and limits() do not answer as one)"
            )
            return [Problem(line)], chain_id
        problems = []
        if not contract.functions.hasRole(OPERATOR_ROLE, operator).call():
            problems.append(
                Problem(
                    f"BRIDGE_OPERATOR_KEY: {operator} lacks OPERATOR_ROLE on {address} "
                    "(grant it with: ce-bridge admin grant-operator)"
                )
            )
        if w3.eth.get_balance(Web3.to_checksum_address(operator)) == 0:
            problems.append(Problem(f"operator {operator} has no ETH for gas", warning=True))
        if settings.operator_key is not None and chain_id not in DEV_CHAIN_IDS:
            problems.append(
                Problem(
                    f"BRIDGE_OPERATOR_KEY: a raw private key from the environment on chain "
                    f"{chain_id}, not a development chain: use an encrypted keystore "
                    "(BRIDGE_OPERATOR_KEYSTORE with BRIDGE_OPERATOR_KEYSTORE_PASSWORD_FILE; "
                    "docs/RUNBOOK.md)",
                    warning=True,
                )
            )
    except (OSError, Web3RPCError) as exc:
        line = f"BRIDGE_RPC_URL: the node at {node} failed: {type(exc).__name__}"
        return [Problem(line, True)], chain_id
    return problems, chain_id


def describe_setup(config_file: Path | None = None) -> list[str]:
    """What ``config check`` says besides problems: the RPC endpoints (redacted), the finality
    mode with how far behind the head the scanner reads now, and the fee mode. Empty when the
    settings do not load; a node that does not answer gives the lines it can."""
    try:
        settings = load_settings(config_file)
    except ConfigError:
        return []
    return describe_settings(settings)


def describe_settings(settings: Settings) -> list[str]:
    """``describe_setup`` for settings already loaded."""
    lines = ["RPC endpoints: " + ", ".join(redact_url(u) for u in settings.rpc_endpoints)]
    finality = Finality.of(settings.confirmations)
    w3 = connect(settings.rpc_endpoints, timeout=10, max_lag=settings.rpc_max_lag)
    try:
        head = int(w3.eth.block_number)
        tagged = tagged_block(w3, finality.tag) if finality.tag else None
        lines.append(
            finality.describe(head, tagged)
            if finality.tag
            else f"{finality.describe()} (reads up to block {finality.target(head)} of {head})"
        )
        fees = FeeOracle(w3, max_fee_wei=settings.max_fee_wei)
        if fees.legacy:
            mode = "legacy gasPrice (the chain has no base fee)"
        else:
            mode = (
                f"EIP-1559, tip at the {settings.fee_percentile:g}th percentile of "
                f"{settings.fee_history_blocks} blocks (at most {settings.max_priority_fee_gwei:g}"
                f" gwei), max fee at most {settings.max_fee_gwei:g} gwei"
            )
        if fees.op_stack:
            mode += "; OP-stack chain: writes also pay an L1 data fee (GasPriceOracle)"
        lines.append(f"fees: {mode}")
    except (RpcUnavailable, Web3Exception, OSError):
        lines.append(finality.describe())
    return lines


def _check_database(
    settings: Settings, chain_id: int | None, *, migrate_apart: bool = False
) -> list[Problem]:
    """Opens (and migrates) the database and checks what it is bound to, without binding it."""
    try:
        db = open_database(settings.database_url, migrate_apart=migrate_apart)
    except StoreUnavailable as exc:
        return [Problem(f"BRIDGE_DATABASE_URL: {exc}", True)]
    except BridgeError as exc:
        return [Problem(f"BRIDGE_DATABASE_URL: {exc}")]
    try:
        bound = control.bound_target(db)
    except SQLAlchemyError as exc:  # the database went away between two statements
        reason, transient = describe_db_error(exc)
        return [Problem(f"BRIDGE_DATABASE_URL: reading its binding failed: {reason}", transient)]
    finally:
        db.dispose()
    configured = control.Target(chain_id, settings.contract_address)
    if bound is not None and not bound.matches(configured):
        return [Problem(control.mismatch(shown_url(settings.database_url), bound, configured))]
    return []


def _check_ce(settings: Settings) -> list[Problem]:
    try:
        with CEClient(
            settings.ce_url, settings.ce_authenticator.get_secret_value(), timeout=10
        ) as client:
            client.ping()
    except RemoteAuthError:
        return [Problem("BRIDGE_CE_AUTHENTICATOR: CE rejected the authenticator (401)")]
    except (RemoteError, ConfigError) as exc:
        line = f"BRIDGE_CE_URL: cannot reach CE at {settings.ce_url}: {exc}"
        return [Problem(line, isinstance(exc, RemoteTransient))]
    return []


def start_bridge(
    settings: Settings,
    stop: threading.Event,
    *,
    first_delay: float = 1.0,
    max_delay: float = 30.0,
) -> Bridge | None:
    """``run``'s start-up: the process lock, the checks, then the bridge (not yet started).

    Waits while a service is unreachable: one warning line per back-off, ``first_delay``
    doubling up to ``max_delay`` seconds, until it answers or ``stop`` is set.

    Returns:
        The bridge, owning the process lock; None if ``stop`` was set while waiting.

    Raises:
        AlreadyRunning: another process uses the same SQLite file. (On PostgreSQL a process
            with the same operator key is no refusal: this one stands by for the key's writer.)
        ConfigError: a permanent problem (``find_problems``), all of them on one line.
        DatabaseBound: the database belongs to another chain or contract.
    """
    from bridge.engine.service import Bridge

    backoff = Backoff(initial=first_delay, cap=max_delay)
    lock: ProcessLock | None = None
    try:
        while not stop.is_set():
            try:
                if lock is None:
                    lock = acquire_process_lock(settings.database_url, settings.operator_address)
                # A due migration runs in a child: this long-running process never loads
                # Alembic (``open_database``).
                problems = find_problems(settings, migrate_apart=True)
                permanent = [p.line for p in problems if not (p.transient or p.warning)]
                if permanent:
                    raise ConfigError("; ".join(permanent))
                waiting = [p.line for p in problems if p.transient]
                if not waiting:
                    for problem in problems:
                        log.warning("%s", problem.line)
                    bridge = Bridge.from_settings(settings, process_lock=lock, migrate_apart=True)
                    lock = None  # the bridge owns it now
                    return bridge
                reason = "; ".join(waiting)
            except StoreUnavailable as exc:
                reason = f"BRIDGE_DATABASE_URL: {exc}"
            except RpcUnavailable:  # its message may carry the URL's credentials
                reason = f"cannot reach a JSON-RPC node at {redact_url(settings.rpc_endpoint)}"
            log.warning("waiting to start: %s; retrying in %g s", reason, backoff.current)
            stop.wait(backoff.current)
            backoff.failed()
        return None
    finally:
        if lock is not None:
            lock.release()
