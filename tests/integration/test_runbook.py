"""docs/RUNBOOK.md's deploy, verify and grant steps, run as written (its ``sh`` blocks of steps 1
and 2) with Foundry's ``cast`` against a fresh Anvil, the admin's key in an encrypted keystore."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from eth_account import Account
from eth_typing import HexStr
from web3 import Web3

from bridge.chain.deploy import OPERATOR_ROLE, connect, escrow
from bridge.devchain import REPO_ROOT, Anvil
from tests.builders import Accounts

RUNBOOK = REPO_ROOT / "docs" / "RUNBOOK.md"


def _blocks(section: str) -> list[str]:
    """The ``sh`` code blocks of the runbook's section whose heading starts with ``section``."""
    text = RUNBOOK.read_text()
    body = re.split(r"^## ", text, flags=re.MULTILINE)
    (part,) = [b for b in body if b.startswith(section)]
    return re.findall(r"```sh\n(.*?)```", part, flags=re.DOTALL)


def test_the_runbooks_cast_steps_deploy_verify_and_grant(
    tmp_path: Path, accounts: Accounts
) -> None:
    keystore = tmp_path / "admin.json"
    keystore.write_text(json.dumps(Account.encrypt(HexStr(accounts.keys[0]), "pw", iterations=2)))
    password = tmp_path / "admin.pass"
    password.write_text("pw\n")
    (tmp_path / "abi").symlink_to(REPO_ROOT / "abi")  # the runbook runs from the repository
    with Anvil(chain_id=11155111) as node:
        env = {
            **os.environ,
            "PATH": f"{REPO_ROOT / 'node_modules' / '.bin'}:{os.environ['PATH']}",
            "RPC": node.url,
            "CHAIN_ID": "11155111",
            "ADMIN": accounts.admin,
            "ADMIN_KS": str(keystore),
            "ETH_PASSWORD": str(password),  # cast: the keystore's password file
            "OPERATOR": accounts.operator,
            "TREASURY": accounts.treasury,
        }
        steps = _blocks("1. Deploy") + _blocks("2. Fund")
        script = "set -euo pipefail\n" + "\n".join(steps) + '\necho "ESCROW=$ESCROW"\n'
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "code matches abi/JobEscrow.json" in done.stdout
        address = re.findall(r"^ESCROW=(0x[0-9a-fA-F]{40})$", done.stdout, flags=re.MULTILINE)[-1]
        w3 = connect(node.url)
        contract = escrow(w3, address)
        assert contract.functions.hasRole(OPERATOR_ROLE, accounts.operator).call()
        assert contract.functions.hasRole(b"\0" * 32, accounts.admin).call()
        assert contract.functions.treasury().call() == accounts.treasury
        assert w3.eth.get_balance(Web3.to_checksum_address(accounts.operator)) > 0
        assert accounts.keys[0][2:] not in done.stdout + done.stderr
