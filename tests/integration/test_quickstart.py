"""The README's viem example (dapp/examples/quickstart.mjs) runs with node against the stack."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bridge.chain.artifacts import REPO_ROOT
from bridge.chain.spec import Status
from bridge.devstack import LocalStack

EXAMPLE = REPO_ROOT / "dapp" / "examples" / "quickstart.mjs"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_viem_quickstart_submits_waits_and_verifies(tmp_path: Path) -> None:
    if not (REPO_ROOT / "node_modules" / "viem").is_dir():
        pytest.skip("viem is not installed: run scripts/setup")
    with LocalStack(tmp_path, block_time=1.0, confirmations=1) as stack:
        assert stack.anvil is not None
        env = {
            **os.environ,
            "RPC_URL": stack.anvil.url,
            "CONTRACT": stack.escrow.address,
            "API_URL": stack.api_url,
            "PRIVATE_KEY": stack.roles.keys[2],
        }
        done = subprocess.run(
            ["node", str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        job = stack.escrow.functions.getJob(1).call()
        assert Status(job[1]) is Status.COMPLETED
        assert job[0] == stack.roles.user
        assert "job 1 submitted" in done.stdout
        assert f"result hash 0x{bytes(job[6]).hex()} verified" in done.stdout
