"""Configuration: precedence (overrides > environment > TOML file > defaults), the operator key
from the environment or an encrypted keystore, and one line per problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from bridge.config import load_settings
from bridge.errors import ConfigError

KEY = "0x" + "42" * 32
ADDRESS = Account.from_key(KEY).address
BASE = {
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
