"""Configuration from ``BRIDGE_*`` environment variables and an optional TOML file.

Precedence, highest first: explicit overrides (tests, CLI) > ``BRIDGE_*`` environment variables >
the TOML file named by ``BRIDGE_CONFIG`` (or ``--config``; keys are the field names without the
prefix, e.g. ``rpc_url = "..."``) > defaults.

The operator key comes from ``BRIDGE_OPERATOR_KEY`` or from an encrypted keystore file
(``BRIDGE_OPERATOR_KEYSTORE`` with ``BRIDGE_OPERATOR_KEYSTORE_PASSWORD`` or
``BRIDGE_OPERATOR_KEYSTORE_PASSWORD_FILE``). Secrets are ``SecretStr``: they print as
``**********`` in reprs, logs and errors. ``load_settings`` turns every validation problem into
one ``ConfigError`` line per field, naming the variable to fix.
"""

from __future__ import annotations

import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from web3 import Web3

from bridge.errors import ConfigError
from bridge.remote.convention import DEFAULT_BASE_URL

#: An origin as browsers send it in ``Origin``: scheme, host and optional port, nothing else.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+/?")


class Settings(BaseSettings):
    """Everything ``ce-bridge run`` needs. Field ``x`` is read from ``BRIDGE_X``."""

    model_config = SettingsConfigDict(env_prefix="BRIDGE_", extra="ignore", frozen=True)

    #: The TOML file ``load_settings`` reads (set per call; None: no file).
    _toml_file: ClassVar[Path | None] = None

    rpc_url: str = Field(description="JSON-RPC URL of the Ethereum node")
    contract_address: str = Field(description="address of the JobEscrow contract")
    operator_key: SecretStr | None = Field(
        default=None, description="private key of an account with OPERATOR_ROLE"
    )
    operator_keystore: Path | None = Field(default=None, description="encrypted keystore file")
    operator_keystore_password: SecretStr | None = None
    operator_keystore_password_file: Path | None = None
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
    cors_origins: str = Field(
        default="",
        description="comma-separated origins whose pages may read the public GET routes (CORS)",
    )
    dapp_rpc_url: str | None = Field(
        default=None,
        description="public JSON-RPC URL the dapp at /app/ reads with (none: the wallet's)",
    )
    dapp_explorer_url: str | None = Field(
        default=None, description="block explorer base URL for the dapp's transaction links"
    )
    max_scan_lag: int = Field(
        default=50, ge=0, description="blocks the scanner may trail head - confirmations (readyz)"
    )

    scan_interval: float = Field(default=1.0, gt=0, description="seconds between log scans")
    poll_interval: float = Field(default=1.0, gt=0, description="seconds between CE polls")
    tx_interval: float = Field(default=0.5, gt=0, description="seconds between tx manager ticks")
    max_block_range: int = Field(default=2000, ge=1, description="largest eth_getLogs range")
    reorg_depth: int = Field(default=64, ge=1, description="block hashes kept for reorg checks")
    batch_size: int = Field(default=50, ge=1, le=500, description="updates per applyUpdates")
    batch_wait: float = Field(
        default=0.25, ge=0, description="seconds a partial batch waits to fill (a full one: none)"
    )
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

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",")):
            if origin and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], no path)")
        return value

    @property
    def cors_origin_list(self) -> frozenset[str]:
        """The origins of ``BRIDGE_CORS_ORIGINS`` (empty: no cross-origin reads)."""
        return frozenset(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())

    @field_validator("operator_key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            Account.from_key(value.get_secret_value())
        except Exception:  # eth-account raises several types; none may echo the key
            raise ValueError("not a valid private key (32 bytes of hex)") from None
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> Settings:
        if (self.operator_key is None) == (self.operator_keystore is None):
            raise ValueError("set exactly one of BRIDGE_OPERATOR_KEY and BRIDGE_OPERATOR_KEYSTORE")
        if self.operator_keystore is not None:
            if not self.operator_keystore.is_file():
                raise ValueError(f"BRIDGE_OPERATOR_KEYSTORE: no such file {self.operator_keystore}")
            if self.operator_keystore_password is None and (
                self.operator_keystore_password_file is None
            ):
                raise ValueError(
                    "BRIDGE_OPERATOR_KEYSTORE needs BRIDGE_OPERATOR_KEYSTORE_PASSWORD "
                    "or BRIDGE_OPERATOR_KEYSTORE_PASSWORD_FILE"
                )
        return self

    @cached_property
    def operator_account(self) -> LocalAccount:
        """The operator's account, decrypting the keystore if that is where the key is.

        Raises:
            ConfigError: the keystore cannot be read or the password is wrong.
        """
        if self.operator_key is not None:
            account: LocalAccount = Account.from_key(self.operator_key.get_secret_value())
            return account
        assert self.operator_keystore is not None
        if self.operator_keystore_password is not None:
            password = self.operator_keystore_password.get_secret_value()
        else:
            assert self.operator_keystore_password_file is not None
            password = self.operator_keystore_password_file.read_text().rstrip("\n")
        try:
            keystore = json.loads(self.operator_keystore.read_text())
            key = Account.decrypt(keystore, password)
        except ValueError:
            raise ConfigError(
                f"cannot decrypt {self.operator_keystore}: wrong password or not a keystore"
            ) from None
        account = Account.from_key(key)
        return account

    @property
    def operator_address(self) -> str:
        """The checksum address of the operator key."""
        return str(self.operator_account.address)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Overrides > environment > TOML file > defaults."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Reads the settings: ``overrides`` > environment > TOML file > defaults.

    Args:
        config_file: the TOML file; default ``$BRIDGE_CONFIG``, or none.

    Raises:
        ConfigError: one line per invalid or missing setting, naming its ``BRIDGE_*`` variable.
    """
    env_file = os.environ.get("BRIDGE_CONFIG")
    path = config_file or (Path(env_file) if env_file else None)
    if path is not None and not path.is_file():
        raise ConfigError(f"BRIDGE_CONFIG: no such file {path}")
    cls = type("FileSettings", (Settings,), {"_toml_file": path}) if path else Settings
    try:
        settings: Settings = cls(**overrides)
        return settings
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            if not error["loc"]:
                lines.append(str(error["msg"]).removeprefix("Value error, "))
                continue
            field = str(error["loc"][0])
            message = "is required" if error["type"] == "missing" else error["msg"]
            lines.append(f"BRIDGE_{field.upper()} {message}")
        raise ConfigError("; ".join(lines)) from None
