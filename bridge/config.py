"""Configuration from ``BRIDGE_*`` environment variables (pydantic-settings).

Secrets (the operator key and the CE authenticator) are ``SecretStr``: they print as ``**********``
in reprs, logs and errors. ``load_settings`` turns every validation problem into one
``ConfigError`` line per field, naming the variable to fix.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from web3 import Web3

from bridge.errors import ConfigError
from bridge.remote.convention import DEFAULT_BASE_URL


class Settings(BaseSettings):
    """Everything ``ce-bridge run`` needs. Field ``x`` is read from ``BRIDGE_X``."""

    model_config = SettingsConfigDict(env_prefix="BRIDGE_", extra="ignore", frozen=True)

    rpc_url: str = Field(description="JSON-RPC URL of the Ethereum node")
    contract_address: str = Field(description="address of the JobEscrow contract")
    operator_key: SecretStr = Field(description="private key of an account with OPERATOR_ROLE")
    ce_url: str = Field(default=DEFAULT_BASE_URL, description="CE Remote API base URL")
    ce_authenticator: SecretStr = Field(description="CE authenticator")
    database_url: str = Field(default="sqlite:///ce-bridge.db")
    confirmations: int = Field(default=2, ge=0, description="blocks an event must be buried by")
    start_block: int | None = Field(default=None, ge=0, description="first block of a fresh scan")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    admin_token: SecretStr | None = None
    public_url: str | None = Field(
        default=None, description="base URL of this bridge's API, used in resultURI"
    )

    scan_interval: float = Field(default=1.0, gt=0, description="seconds between log scans")
    poll_interval: float = Field(default=1.0, gt=0, description="seconds between CE polls")
    tx_interval: float = Field(default=0.5, gt=0, description="seconds between tx manager ticks")
    max_block_range: int = Field(default=2000, ge=1, description="largest eth_getLogs range")
    reorg_depth: int = Field(default=64, ge=1, description="block hashes kept for reorg checks")
    batch_size: int = Field(default=50, ge=1, le=500, description="updates per applyUpdates")
    batch_wait: float = Field(default=0.0, ge=0, description="seconds to wait to fill a batch")
    tx_stuck_after: float = Field(default=30.0, gt=0, description="seconds before a fee bump")
    fee_bump_percent: int = Field(default=25, ge=10, description="fee increase per bump")
    max_fee_gwei: float = Field(default=500.0, gt=0, description="ceiling for maxFeePerGas")
    ce_max_attempts: int = Field(default=5, ge=1, description="CE tries per call")
    ce_timeout: float = Field(default=10.0, gt=0)
    create_retry_budget: int = Field(
        default=10, ge=1, description="job-create rounds before the job is failed on-chain"
    )
    deadline_margin: int = Field(
        default=300, ge=0, description="seconds before the deadline a running job is failed"
    )
    max_output_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    log_json: bool = False

    @field_validator("contract_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not Web3.is_address(value):
            raise ValueError("not an Ethereum address (0x followed by 40 hex digits)")
        return Web3.to_checksum_address(value)

    @field_validator("operator_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        try:
            Account.from_key(value.get_secret_value())
        except Exception as exc:  # eth-account raises several types; none may echo the key
            raise ValueError("not a valid private key (32 bytes of hex)") from exc
        return value

    @property
    def operator_address(self) -> str:
        """The checksum address of the operator key."""
        return str(Account.from_key(self.operator_key.get_secret_value()).address)


def load_settings(**overrides: Any) -> Settings:
    """Reads the settings from the environment (``overrides`` win).

    Raises:
        ConfigError: one line per invalid or missing setting, naming its ``BRIDGE_*`` variable.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            message = "is required" if error["type"] == "missing" else error["msg"]
            lines.append(f"BRIDGE_{field.upper()} {message}")
        raise ConfigError("; ".join(lines)) from None
