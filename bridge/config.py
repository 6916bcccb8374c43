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

import difflib
import json
import os
import re
import tomllib
from collections.abc import Collection
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bridge.chain.address import checksum_address
from bridge.errors import ConfigError
from bridge.jobdoc import explain
from bridge.remote.convention import DEFAULT_BASE_URL

#: An origin as browsers send it in ``Origin``: scheme, host and optional port, nothing else.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+/?")


class Settings(BaseSettings):
    """Everything ``ce-bridge run`` needs. Field ``x`` is read from ``BRIDGE_X``."""

    model_config = SettingsConfigDict(env_prefix="BRIDGE_", extra="ignore", frozen=True)

    #: The TOML file ``load_settings`` reads (set per call; None: no file).
    _toml_file: ClassVar[Path | None] = None

    rpc_urls: str = Field(
        default="",
        description="comma-separated JSON-RPC URLs, preferred first: reads and writes fail over, "
        "broadcasts go to all (instead of BRIDGE_RPC_URL)",
    )
    rpc_url: str | None = Field(
        default=None,
        validate_default=True,
        description="JSON-RPC URL of the Ethereum node (required unless BRIDGE_RPC_URLS is set)",
    )
    rpc_max_lag: int = Field(
        default=3, ge=0, description="blocks an RPC endpoint may trail the others' head"
    )
    contract_address: str = Field(description="address of the JobEscrow contract")
    operator_key: SecretStr | None = Field(
        default=None, description="private key of an account with OPERATOR_ROLE"
    )
    operator_keystore: Path | None = Field(default=None, description="encrypted keystore file")
    operator_keystore_password: SecretStr | None = Field(
        default=None, description="password of the keystore"
    )
    operator_keystore_password_file: Path | None = Field(
        default=None, description="file holding the password of the keystore"
    )
    ce_url: str = Field(default=DEFAULT_BASE_URL, description="CE Remote API base URL")
    ce_authenticator: SecretStr = Field(description="CE authenticator")
    database_url: str = Field(
        default="sqlite:///ce-bridge.db",
        description="SQLAlchemy URL: `sqlite:///file.db` or `postgresql+psycopg://user@host/db`;"
        " one database per chain and contract",
    )
    confirmations: int | Literal["safe", "finalized"] = Field(
        default=2,
        description="N: an event in block b is acted on once the head is at b + N; or `safe` / "
        "`finalized`: once the node's safe / finalized block reaches b",
    )
    start_block: int | None = Field(
        default=None, ge=0, description="first block a fresh database scans (unset: deployment's)"
    )
    api_host: str = Field(default="127.0.0.1", description="interface the HTTP API listens on")
    api_port: int = Field(default=8080, ge=0, le=65535, description="port of the HTTP API")
    admin_token: SecretStr | None = Field(
        default=None, description="bearer token of the admin routes (unset: they refuse all)"
    )
    public_url: str | None = Field(
        default=None, description="base URL put in resultURI (unset: http://API_HOST:API_PORT)"
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

    scan_interval: float = Field(
        default=1.0,
        gt=0,
        description="seconds between log scans once caught up (behind: the next range at once)",
    )
    poll_interval: float = Field(default=1.0, gt=0, description="seconds between CE polls")
    tx_interval: float = Field(default=0.5, gt=0, description="seconds between tx manager ticks")
    max_block_range: int = Field(default=2000, ge=1, description="largest eth_getLogs range")
    reorg_depth: int = Field(default=64, ge=1, description="block hashes kept for reorg checks")
    batch_size: int = Field(default=100, ge=1, le=500, description="updates per applyUpdates")
    batch_wait: float = Field(
        default=0.25, ge=0, description="seconds a partial batch waits to fill (a full one: none)"
    )
    max_inflight: int = Field(default=16, ge=1, le=64, description="a key's unmined applyUpdates")
    tx_stuck_after: float = Field(default=30.0, gt=0, description="seconds before a fee bump")
    fee_bump_percent: int = Field(default=25, ge=10, description="fee increase per bump")
    max_fee_gwei: float = Field(
        default=500.0, gt=0, description="ceiling for maxFeePerGas (or gasPrice on legacy chains)"
    )
    max_priority_fee_gwei: float = Field(
        default=50.0, gt=0, description="ceiling for maxPriorityFeePerGas"
    )
    fee_percentile: float = Field(
        default=50.0,
        ge=0,
        le=100,
        description="percentile of recent priority fees (eth_feeHistory) the tip is set to",
    )
    fee_history_blocks: int = Field(
        default=10, ge=1, le=1024, description="blocks of eth_feeHistory the tip is taken from"
    )
    ce_max_attempts: int = Field(default=5, ge=1, description="CE tries per call")
    ce_timeout: float = Field(default=10.0, gt=0, description="seconds a CE call may take")
    ce_concurrency: int = Field(
        default=32, ge=1, le=256, description="CE calls in flight at once (the worker's threads)"
    )
    create_retry_budget: int = Field(
        default=10, ge=1, description="job-create rounds before the job is failed on-chain"
    )
    claim_lease: float = Field(
        default=60.0,
        gt=0,
        description="seconds a process holds a job's CE step before another may take it "
        "(PostgreSQL, several processes)",
    )
    deadline_margin: int = Field(
        default=300, ge=0, description="seconds before the deadline a running job is failed"
    )
    max_output_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="largest output file downloaded, bytes"
    )
    max_job_output_bytes: int = Field(
        default=1024**3, ge=1, description="most bytes of output one job may have (all files)"
    )
    max_output_files: int = Field(
        default=1000, ge=0, description="most output files one job may have"
    )
    output_inline_bytes: int = Field(
        default=4096,
        ge=0,
        le=65536,  # the download spool (bridge.outputs.SPOOL_BYTES): what is held in memory
        description="output files up to this size are kept in the database, not in output_dir "
        "(0: every file in output_dir)",
    )
    output_dir: Path | None = Field(
        default=None,
        description="where result files are stored (default: beside the SQLite file, or "
        "./ce-bridge-data/outputs)",
    )
    max_request_bytes: int = Field(
        default=64 * 1024, ge=1024, description="largest HTTP request body the API reads"
    )
    log_json: bool = Field(default=False, description="log one JSON object per line")

    @field_validator("confirmations", mode="before")
    @classmethod
    def _confirmations(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("safe", "finalized"):
                return text
            if not text.isdigit():
                expected = "expected a number of blocks, `safe` or `finalized`"
                raise ValueError(f"{expected}, got {value!r}")
            return int(text)
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"expected a number of blocks, `safe` or `finalized`, got {value}")
        return value

    @field_validator("rpc_urls")
    @classmethod
    def _rpc_urls(cls, value: str) -> str:
        for url in (u.strip() for u in value.split(",")):
            if url and not url.startswith(("http://", "https://")):
                raise ValueError("each URL must start with http:// or https://")
        return value

    @field_validator("rpc_url")
    @classmethod
    def _rpc_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        # rpc_urls is declared first, so it is validated (or failed) by now.
        if value is None and not str(info.data.get("rpc_urls") or "").strip():
            raise PydanticCustomError("missing", "Field required")
        return value

    @property
    def rpc_endpoints(self) -> tuple[str, ...]:
        """The JSON-RPC URLs, preferred first: ``BRIDGE_RPC_URLS``, else ``BRIDGE_RPC_URL``."""
        urls = tuple(u.strip() for u in self.rpc_urls.split(",") if u.strip())
        if urls:
            return urls
        return (self.rpc_url,) if self.rpc_url else ()

    @property
    def rpc_endpoint(self) -> str:
        """The preferred JSON-RPC URL (the first of ``rpc_endpoints``)."""
        return self.rpc_endpoints[0]

    @property
    def finality_tag(self) -> Literal["safe", "finalized"] | None:
        """``safe`` or ``finalized`` when ``BRIDGE_CONFIRMATIONS`` names a tag, else None."""
        return None if isinstance(self.confirmations, int) else self.confirmations

    @property
    def max_fee_wei(self) -> int:
        """``max_fee_gwei`` in wei: the ceiling of every fee the writer signs."""
        return int(self.max_fee_gwei * 10**9)

    @property
    def max_tip_wei(self) -> int:
        """``max_priority_fee_gwei`` in wei."""
        return int(self.max_priority_fee_gwei * 10**9)

    @property
    def confirmation_depth(self) -> int:
        """``BRIDGE_CONFIRMATIONS`` as a number of blocks; 0 when it names a tag (the tag,
        not a count, decides: see ``bridge.chain.finality``)."""
        return self.confirmations if isinstance(self.confirmations, int) else 0

    @field_validator("contract_address")
    @classmethod
    def _address(cls, value: str) -> str:
        return checksum_address(value)

    @field_validator("ce_authenticator")
    @classmethod
    def _authenticator(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("is empty: set it to your CE account's authenticator")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        check_database_url(value)
        return value

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
    def output_root(self) -> Path:
        """The output file store's directory: ``output_dir``, else ``ce-bridge-outputs``
        beside the SQLite file, else ``./ce-bridge-data/outputs``."""
        if self.output_dir is not None:
            return self.output_dir
        url = self.database_url
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
            return path.parent / "ce-bridge-outputs"
        return Path("ce-bridge-data") / "outputs"

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


#: ``BRIDGE_*`` variables that are not settings of ``run`` but are read elsewhere.
OTHER_VARIABLES: Final = {
    "BRIDGE_CONFIG": "the TOML config file",
    "BRIDGE_USER_KEY": "the signing key of the user and admin commands",
}


def check_database_url(value: str) -> None:
    """Checks that ``value`` is a database URL the bridge can open (SQLite or psycopg 3).

    Raises:
        ValueError: the problem, in words, without the URL's password.
    """
    expected = "sqlite:///FILE or postgresql+psycopg://USER@HOST:PORT/DATABASE"
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(f"not a database URL: expected {expected}") from None
    # From the text, not the dialect: SQLAlchemy imports a dialect to name its default driver.
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgres", "postgresql") and driver != "psycopg":
        raise ValueError(
            f"{url.drivername}:// is not supported: use postgresql+psycopg://… "
            "(psycopg 3 is the driver installed)"
        )
    if backend != "sqlite" and backend != "postgresql":
        raise ValueError(f"unsupported database {url.drivername}://: expected {expected}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None


def _config_path(config_file: Path | None) -> Path | None:
    env_file = os.environ.get("BRIDGE_CONFIG")
    path = config_file or (Path(env_file) if env_file else None)
    if path is not None and not path.is_file():
        raise ConfigError(f"BRIDGE_CONFIG: no such file {path}")
    return path


def _env_name(field: str) -> str:
    return f"BRIDGE_{field.upper()}"


def _from_environment(field: str) -> bool:
    name = _env_name(field)
    return any(key.upper() == name for key in os.environ)


def _hides_value(field: str) -> bool:
    info = Settings.model_fields.get(field)
    annotation = str(info.annotation) if info is not None else ""
    return "SecretStr" in annotation or field.endswith("_url") or "key" in field


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Reads the settings: ``overrides`` > environment > TOML file > defaults.

    Args:
        config_file: the TOML file; default ``$BRIDGE_CONFIG``, or none.

    Raises:
        ConfigError: one line per invalid or missing setting (joined by ``"; "``), naming where
            to fix it: its ``BRIDGE_*`` variable, or its key in the TOML file when the value came
            from there. A malformed TOML file is one line naming the file, line and column.
    """
    path = _config_path(config_file)
    toml_data = _read_toml(path) if path is not None else {}
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
            if error["type"] == "missing":
                lines.append(f"{_env_name(field)} is required")
                continue
            message = explain(error, secret=_hides_value(field))
            if field in toml_data and field not in overrides and not _from_environment(field):
                where = f"{path}: {field}"
            else:
                where = _env_name(field)
            lines.append(f"{where}: {message}")
        raise ConfigError("; ".join(lines)) from None


def unknown_settings(config_file: Path | None = None) -> list[str]:
    """One line per ``BRIDGE_*`` variable or TOML key that is no setting, with close matches.

    A misspelt name is otherwise silently ignored (its setting keeps its default), so
    ``config check`` reports these as problems and ``run`` logs them as a warning at start.

    Raises:
        ConfigError: the TOML file is missing or malformed.
    """
    fields = list(Settings.model_fields)
    known_env = [_env_name(f) for f in fields] + list(OTHER_VARIABLES)
    lines = []
    for name in sorted(os.environ):
        if name.upper().startswith("BRIDGE_") and name.upper() not in known_env:
            lines.append(f"{name}: no such setting{_did_you_mean(name.upper(), known_env)}")
    path = _config_path(config_file)
    if path is not None:
        for key in _read_toml(path):
            if key not in fields:
                lines.append(f"{path}: {key}: no such setting{_did_you_mean(key, fields)}")
    return lines


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def settings_table() -> str:
    """The README's settings table, generated from ``Settings``: one row per field."""
    rows = [
        "| variable | TOML key | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, info in Settings.model_fields.items():
        value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
        if info.is_required():
            default = "required"
        elif value is None or value == "" or (isinstance(value, Collection) and not value):
            default = "unset"
        elif isinstance(value, SecretStr):
            default = "(secret)"
        elif isinstance(value, list | tuple | set | frozenset):
            default = f"`{','.join(str(v) for v in value)}`"
        else:
            default = f"`{str(value).lower() if isinstance(value, bool) else value}`"
        description = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{_env_name(name)}` | `{name}` | {default} | {description} |")
    return "\n".join(rows) + "\n"


README_MARKERS: Final = ("<!-- settings-table:start -->\n", "<!-- settings-table:end -->")


def update_readme(readme: Path) -> bool:
    """Rewrites the settings table between ``README_MARKERS`` in ``readme``; True if it changed.

    Raises:
        ConfigError: the markers are missing.
    """
    text = readme.read_text()
    start, end = README_MARKERS
    if start not in text or end not in text:
        raise ConfigError(f"{readme}: no {start.strip()} ... {end} markers")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    new = head + start + settings_table() + end + tail
    if new != text:
        readme.write_text(new)
    return new != text


if __name__ == "__main__":
    import sys

    usage = (
        "usage: python -m bridge.config --markdown       (print the README's settings table)\n"
        "       python -m bridge.config --update-readme  (rewrite it in README.md)"
    )
    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(settings_table())
    elif sys.argv[1:] == ["--update-readme"]:
        path = Path(__file__).resolve().parent.parent / "README.md"
        print(f"{path}: " + ("settings table updated" if update_readme(path) else "up to date"))
    else:
        sys.exit(usage)
