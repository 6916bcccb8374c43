"""Configuration: precedence (overrides > environment > TOML file > defaults), the operator key
from the environment or an encrypted keystore, and one line per problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypedDict

import pytest
from eth_account import Account
from eth_typing import HexStr

from bridge.config import load_settings
from bridge.errors import ConfigError


class _Base(TypedDict):
    """The settings every test passes. Typed by key, ``**BASE`` fills ``load_settings``'s
    ``**overrides``; for mypy, a merged plain dict could fill its ``config_file`` too, so those
    calls pass ``config_file=None`` (its default) by name."""

    rpc_url: str
    contract_address: str
    ce_authenticator: str


KEY = HexStr("0x" + "42" * 32)
ADDRESS = Account.from_key(KEY).address
BASE: _Base = {
    "rpc_url": "http://127.0.0.1:8545",
    "contract_address": "0x" + "11" * 20,
    "ce_authenticator": "auth-secret-123",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)


def test_precedence_environment_over_file_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('rpc_url = "http://from-file"\nconfirmations = 7\nbatch_size = 9\n')
    monkeypatch.setenv("BRIDGE_CONFIG", str(path))
    monkeypatch.setenv("BRIDGE_CONFIRMATIONS", "3")
    settings = load_settings(
        contract_address=BASE["contract_address"],
        ce_authenticator="a",
        operator_key=KEY,
    )
    assert settings.rpc_url == "http://from-file"  # file over default
    assert settings.confirmations == 3  # environment over file
    assert settings.batch_size == 9
    assert settings.poll_interval == 1.0  # default
    assert load_settings(**BASE, operator_key=KEY, batch_size=4).batch_size == 4  # override


def test_missing_config_file_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_CONFIG", "/nonexistent/bridge.toml")
    with pytest.raises(ConfigError, match="BRIDGE_CONFIG: no such file"):
        load_settings(**BASE, operator_key=KEY)


def test_operator_key_from_an_encrypted_keystore(tmp_path: Path) -> None:
    keystore = tmp_path / "operator.json"
    keystore.write_text(json.dumps(Account.encrypt(KEY, "correct horse", iterations=2)))
    settings = load_settings(
        **BASE, operator_keystore=keystore, operator_keystore_password="correct horse"
    )
    assert settings.operator_address == ADDRESS
    password_file = tmp_path / "password"
    password_file.write_text("correct horse\n")
    from_file = load_settings(
        **BASE, operator_keystore=keystore, operator_keystore_password_file=password_file
    )
    assert from_file.operator_address == ADDRESS
    wrong = load_settings(**BASE, operator_keystore=keystore, operator_keystore_password="nope")
    with pytest.raises(ConfigError, match="wrong password") as err:
        _ = wrong.operator_account
    assert "nope" not in str(err.value)


def test_exactly_one_key_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of BRIDGE_OPERATOR_KEY"):
        load_settings(**BASE)
    keystore = tmp_path / "k.json"
    keystore.write_text("{}")
    with pytest.raises(ConfigError, match="exactly one"):
        load_settings(**BASE, operator_key=KEY, operator_keystore=keystore)
    with pytest.raises(ConfigError, match="needs BRIDGE_OPERATOR_KEYSTORE_PASSWORD"):
        load_settings(**BASE, operator_keystore=keystore)


def test_problems_name_their_variables_and_hide_secrets() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(
            rpc_url="x",
            contract_address="0x1234",
            ce_authenticator="auth-secret-123",
            operator_key="0x" + "zz" * 32,
            confirmations=-1,
        )
    message = str(err.value)
    assert "BRIDGE_CONTRACT_ADDRESS" in message
    assert "BRIDGE_OPERATOR_KEY" in message
    assert "BRIDGE_CONFIRMATIONS" in message
    assert "\n" not in message
    assert "auth-secret-123" not in message and "zz" * 32 not in message
    settings = load_settings(**BASE, operator_key=KEY)
    assert "auth-secret-123" not in repr(settings) and KEY[2:] not in repr(settings)


def problem(**changes: object) -> str:
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=None, **{**BASE, "operator_key": KEY, **changes})
    return str(err.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:pw-77@h/db", "use postgresql+psycopg://"),
        ("postgresql://u:pw-77@h/db", "use postgresql+psycopg://"),
        ("mysql://u:pw-77@h/db", "unsupported database mysql://"),
        ("::garbage::", "not a database URL: expected sqlite:///FILE or postgresql+psycopg://"),
    ],
)
def test_database_urls_the_bridge_cannot_open_are_named(url: str, expected: str) -> None:
    message = problem(database_url=url)
    assert message.startswith("BRIDGE_DATABASE_URL: ") and expected in message
    assert "pw-77" not in message


def test_accepted_database_urls() -> None:
    for url in ("sqlite:///x.db", "sqlite+pysqlite:///x.db", "postgresql+psycopg://u@h:5/d"):
        assert load_settings(**BASE, operator_key=KEY, database_url=url).database_url == url


def test_an_empty_authenticator_is_named_as_such() -> None:
    message = problem(ce_authenticator="  ")
    assert message.startswith("BRIDGE_CE_AUTHENTICATOR: is empty")


def test_addresses_with_a_wrong_checksum_are_refused_lowercase_is_accepted() -> None:
    address = "0x52908400098527886E0F7030069857D2E4169EE7"
    assert load_settings(
        config_file=None, **{**BASE, "contract_address": address.lower()}, operator_key=KEY
    )
    i = next(i for i, c in enumerate(address) if i > 1 and c.isalpha())
    wrong = address[:i] + address[i].swapcase() + address[i + 1 :]  # one letter's case flipped
    assert wrong != address and wrong.lower() == address.lower()
    message = problem(contract_address=wrong)
    assert message.startswith("BRIDGE_CONTRACT_ADDRESS: ") and "EIP-55 checksum" in message
    assert "Value error" not in message


def test_a_bad_toml_value_is_reported_under_its_key_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('confirmations = "two"\nbatch_size = 0\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path, **BASE, operator_key=KEY)
    assert str(err.value) == (
        f"{path}: confirmations: expected a number of blocks, `safe` or `finalized`, got 'two'; "
        f"{path}: batch_size: must be at least 1, got 0"
    )
    monkeypatch.setenv("BRIDGE_CONFIRMATIONS", "x")  # the environment wins, and is named
    with pytest.raises(ConfigError, match=r"^BRIDGE_CONFIRMATIONS: expected a number of blocks"):
        load_settings(path, **BASE, operator_key=KEY)


def test_malformed_toml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('rpc_url = "http://x"\nconfirmations = = 3\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value).startswith(f"{path}: not valid TOML: ") and "line 2" in str(err.value)


def test_unknown_settings_are_reported_with_close_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.config import unknown_settings

    path = tmp_path / "bridge.toml"
    path.write_text("rpc_url = 'x'\nconfirmation = 3\nflux_capacitor = 1\n")
    monkeypatch.setenv("BRIDGE_DATABSE_URL", "sqlite:///x.db")
    monkeypatch.setenv("BRIDGE_USER_KEY", KEY)  # read by the user commands: not a typo
    monkeypatch.setenv("BRIDGE_CONFIG", str(path))
    assert unknown_settings() == [
        "BRIDGE_DATABSE_URL: no such setting (did you mean BRIDGE_DATABASE_URL?)",
        f"{path}: confirmation: no such setting (did you mean confirmations?)",
        f"{path}: flux_capacitor: no such setting",
    ]


def test_the_readme_settings_table_is_generated_from_settings() -> None:
    """Regenerate with: .venv/bin/python -m bridge.config --update-readme."""
    from bridge.config import Settings, settings_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start, end = "<!-- settings-table:start -->\n", "<!-- settings-table:end -->"
    assert start in readme and end in readme, "the README lost its settings-table markers"
    table = readme.split(start, 1)[1].split(end, 1)[0].strip("\n")
    assert table == settings_table().strip("\n"), (
        "README.md's settings table is stale: run `.venv/bin/python -m bridge.config "
        "--update-readme`"
    )
    for name in Settings.model_fields:
        assert f"`BRIDGE_{name.upper()}`" in table


def test_role_names_in_reverts_match_the_contract() -> None:
    from bridge.chain.deploy import OPERATOR_ROLE
    from bridge.errors import ROLE_NAMES, ContractRevert

    assert ROLE_NAMES[bytes(OPERATOR_ROLE)] == "OPERATOR_ROLE"
    error = ContractRevert("AccessControlUnauthorizedAccount", ("0xAbC", bytes(OPERATOR_ROLE)))
    assert str(error).endswith("AccessControlUnauthorizedAccount(0xAbC, OPERATOR_ROLE)")
    assert "0x" + "ab" * 32 in str(ContractRevert("X", (b"\xab" * 32,)))


def test_update_readme_rewrites_only_the_table(tmp_path: Path) -> None:
    from bridge.config import settings_table, update_readme

    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n<!-- settings-table:start -->\n| old |\n<!-- settings-table:end -->\noutro\n"
    )
    assert update_readme(readme) is True
    assert readme.read_text() == (
        "intro\n<!-- settings-table:start -->\n"
        + settings_table()
        + "<!-- settings-table:end -->\noutro\n"
    )
    assert update_readme(readme) is False
    readme.write_text("no markers\n")
    with pytest.raises(ConfigError, match="markers"):
        update_readme(readme)
