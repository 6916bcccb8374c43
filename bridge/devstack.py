"""A whole local ce-bridge stack in one object: Anvil, the CE emulator, the deployed contracts and
a running bridge with its HTTP API. Used by the demo, the end-to-end tests and the benchmarks.

``LocalStack`` owns every process and thread it starts; ``close()`` (or leaving the ``with``
block) stops them all, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.contract import Contract

from bridge.api import ApiServer, create_app, serve_api_in_thread
from bridge.chain.deploy import connect, consumer, deploy, deploy_escrow, escrow
from bridge.config import Settings, load_settings
from bridge.devchain import Anvil, anvil_key, free_port
from bridge.engine.service import Bridge
from bridge.lifecycle import Service
from bridge.remote.emulator import EmulatorConfig
from bridge.remote.server import EmulatorServer

#: The authenticator the local stack uses with its emulator (not a real CE credential).
LOCAL_AUTHENTICATOR = "local-demo-authenticator-5f1c2a"


@dataclass(frozen=True)
class Roles:
    """Anvil accounts by role."""

    admin: str
    operator: str
    user: str
    treasury: str
    keys: tuple[str, ...] = field(repr=False)


def local_roles() -> Roles:
    """Anvil's accounts 0..3 as admin, operator, user and treasury."""
    keys = tuple(anvil_key(i) for i in range(4))
    admin, operator, user, treasury = (str(Account.from_key(k).address) for k in keys)
    return Roles(admin, operator, user, treasury, keys)


class LocalStack(Service):
    """Anvil + emulator + contracts + bridge on free loopback ports.

    Args:
        workdir: where the SQLite database and the emulator's files go.
        block_time: Anvil interval mining in seconds (None: a block per transaction).
        confirmations: ``BRIDGE_CONFIRMATIONS`` of the bridge.
        database_url: defaults to a SQLite file in ``workdir``.
        emulator_config: the emulator's settings (timings, faults).
        start_bridge: False to start everything but the bridge.
        settings: extra ``Settings`` fields for the bridge.
        serve_api: serve the bridge's HTTP API (``bridge.api``) next to it, on
            ``settings.api_host:settings.api_port`` (where the on-chain ``resultURI`` points).
        anvil_args: more command line arguments for Anvil (``--slots-in-an-epoch 2``,
            ``--network optimism``, ``--chain-id 11155111``...).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        block_time: float | None = 1.0,
        confirmations: int | str = 2,
        database_url: str | None = None,
        emulator_config: EmulatorConfig | None = None,
        start_bridge: bool = True,
        settings: dict[str, Any] | None = None,
        serve_api: bool = True,
        anvil_args: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.roles = local_roles()
        self._block_time = block_time
        self._confirmations = confirmations
        self._database_url = database_url or f"sqlite:///{workdir / 'ce-bridge.db'}"
        self._emulator_config = emulator_config or EmulatorConfig(
            provisioning_seconds=0.3,
            downloading_seconds=0.3,
            running_seconds=1.0,
        )
        self._start_bridge = start_bridge
        self._extra = settings or {}
        self._serve_api = serve_api
        self._anvil_args = anvil_args
        self.api: ApiServer | None = None
        self.anvil: Anvil | None = None
        self.emulator: EmulatorServer | None = None
        self.bridge: Bridge | None = None
        self.w3: Web3
        self.escrow: Contract
        self.consumer: Contract
        self.settings: Settings

    def start(self) -> LocalStack:
        """Starts everything; on failure stops what was started and re-raises."""
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.anvil = Anvil(block_time=self._block_time, extra_args=self._anvil_args).start()
        config = self._emulator_config.model_copy(update={"data_dir": self.workdir / "emulator"})
        self.emulator = EmulatorServer(config).start()
        r = self.roles
        self.w3 = connect(self.anvil.url, r.keys)
        address = deploy_escrow(self.w3, r.admin, operators=[r.operator], treasury=r.treasury)
        self.escrow = escrow(self.w3, address)
        self.consumer = consumer(self.w3, deploy(self.w3, "ExampleConsumer", r.user, address))
        fields: dict[str, Any] = {
            "rpc_url": self.anvil.url,
            "contract_address": address,
            "operator_key": r.keys[1],
            "ce_url": self.emulator.base_url,
            "ce_authenticator": LOCAL_AUTHENTICATOR,
            "database_url": self._database_url,
            "confirmations": self._confirmations,
            "api_port": free_port(),
            "scan_interval": 0.25,
            "poll_interval": 0.25,
            "tx_interval": 0.2,
            "output_dir": self.workdir / "outputs",
            # The dapp at /app/ reads the local chain directly (Anvil answers CORS requests).
            "dapp_rpc_url": self.anvil.url,
        }
        self.settings = load_settings(**{**fields, **self._extra})
        if self._start_bridge:
            self.start_bridge()

    def start_bridge(self) -> Bridge:
        """Starts (or restarts) the in-process bridge on the stack's database, and its API."""
        self.bridge = Bridge.from_settings(self.settings)
        if self._serve_api:
            app = create_app(self.settings, self.bridge)
            self.api = serve_api_in_thread(app, self.settings.api_host, self.settings.api_port)
        self.bridge.start()
        return self.bridge

    def stop_bridge(self) -> None:
        """Stops the in-process bridge and its API, if running."""
        api, self.api = self.api, None
        bridge, self.bridge = self.bridge, None
        if api is not None:
            api.stop()
        if bridge is not None:
            bridge.stop()

    @property
    def api_url(self) -> str:
        """The bridge API's base URL, ``http://HOST:PORT`` (served while the bridge runs)."""
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    @property
    def emulator_url(self) -> str:
        """The CE emulator's API base URL."""
        assert self.emulator is not None
        return str(self.emulator.base_url)

    def close(self) -> None:
        """Stops the bridge, the emulator and Anvil (each even if another fails)."""
        with contextlib.suppress(Exception):
            self.stop_bridge()
        if self.emulator is not None:
            with contextlib.suppress(Exception):
                self.emulator.stop()
            self.emulator = None
        if self.anvil is not None:
            self.anvil.stop()
            self.anvil = None

    def stop(self) -> None:
        """Same as ``close``: the ``with`` block's exit."""
        self.close()
