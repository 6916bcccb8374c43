"""A local Anvil node for the demo, the tests and the benchmarks.

``Anvil`` starts the npm-packaged binary (``@foundry-rs/anvil``) on a free loopback port, waits
until it answers JSON-RPC, and guarantees the process is gone after ``stop()`` or leaving the
``with`` block.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Self

from bridge.errors import ConfigError
from bridge.lifecycle import Service, start_process, stop_process_group

__all__ = ["Anvil", "anvil_binary", "anvil_key", "free_port", "rpc", "stop_process_group"]

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Anvil's default mnemonic: public test keys, never use them on a real network.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


def anvil_key(index: int) -> str:
    """The private key (0x-hex) of Anvil's default account ``index``."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return "0x" + bytes(account.key).hex()


def anvil_binary() -> str:
    """Path of the Anvil binary: ``$ANVIL_BIN``, the npm package's, or ``anvil`` on PATH."""
    override = os.environ.get("ANVIL_BIN")
    if override:
        return override
    for candidate in sorted((REPO_ROOT / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil")):
        return str(candidate)
    found = shutil.which("anvil")
    if found:
        return found
    raise ConfigError("anvil not found: run `npm ci` in the repository root (or set ANVIL_BIN)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rpc(url: str, method: str, params: list[Any] | None = None, timeout: float = 10.0) -> Any:
    """One raw JSON-RPC call (for Anvil's own methods, which web3 has no wrapper for)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise RuntimeError(f"{method} failed: {reply['error']}")
    return reply.get("result")


class Anvil(Service):
    """An Anvil process on a free port.

    Args:
        block_time: seconds between blocks (interval mining); None mines each transaction at once.
        chain_id: the chain id to report.
        extra_args: more command line arguments for anvil.
    """

    def __init__(
        self,
        *,
        block_time: float | None = None,
        chain_id: int = 31337,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.chain_id = chain_id
        self._args = [
            anvil_binary(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chain-id",
            str(chain_id),
            "--silent",
            *extra_args,
        ]
        if block_time is not None:
            self._args += ["--block-time", str(block_time)]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Self:
        """Starts Anvil and returns once it answers ``eth_chainId``."""

        def answers() -> bool:
            try:
                rpc(self.url, "eth_chainId", timeout=1.0)
            except OSError:
                return False
            return True

        def exited(process: subprocess.Popen[bytes]) -> str:
            err = process.stderr.read().decode() if process.stderr else ""
            return f"exited with {process.returncode}: {err.strip()}"

        self._process = start_process(
            self._args,
            ready=answers,
            timeout=timeout,
            what="anvil",
            exited=exited,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return self

    def stop(self) -> None:
        """Stops Anvil; the process is gone when this returns."""
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process, grace=5.0)
