"""The committed artifacts under abi/ match the contract sources (run scripts/compile if not)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bridge.chain.artifacts import CONTRACTS, REPO_ROOT, load_artifact, stale_sources


def _copy_tree(tmp_path: Path) -> Path:
    """A repository root in ``tmp_path``: abi/ and contracts/ copied, node_modules linked."""
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "abi", root / "abi")
    shutil.copytree(REPO_ROOT / "contracts", root / "contracts")
    # Imported OpenZeppelin sources are hashed too: link them rather than copy them.
    (root / "node_modules").symlink_to(REPO_ROOT / "node_modules", target_is_directory=True)
    return root


def test_abi_is_not_stale() -> None:
    stale = stale_sources()
    assert stale == [], f"abi/ is stale for {stale}: run scripts/compile and commit abi/"


def test_artifacts_load_with_abi_and_bytecode() -> None:
    for name in CONTRACTS:
        artifact = load_artifact(name)
        assert artifact.abi
        assert artifact.bytecode.startswith("0x") and len(artifact.bytecode) > 2
        assert artifact.deployed_bytecode.startswith("0x") and len(artifact.deployed_bytecode) > 2


def test_an_unchanged_copy_is_not_stale(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)

    assert stale_sources(root) == []


def test_a_modified_source_is_reported_stale(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    source = root / "contracts" / "interfaces" / "IJobEscrow.sol"
    source.write_text(source.read_text() + "\n// an edit after the last compile\n")

    assert stale_sources(root) == ["contracts/interfaces/IJobEscrow.sol"]


def test_a_new_uncompiled_contract_is_reported(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    (root / "contracts" / "Extra.sol").write_text("// SPDX-License-Identifier: MIT\n")
    (root / "contracts" / "test").mkdir(exist_ok=True)
    (root / "contracts" / "test" / "Ignored.t.sol").write_text("// tests are not compiled\n")

    assert stale_sources(root) == ["contracts/Extra.sol (not compiled)"]


def test_a_missing_artifact_is_reported(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    (root / "abi" / "ExampleConsumer.json").unlink()

    assert "abi/ExampleConsumer.json (missing)" in stale_sources(root)


def test_changed_compiler_settings_are_reported(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    path = root / "abi" / "JobEscrow.json"
    artifact = json.loads(path.read_text())
    artifact["compiler"]["settings"]["optimizer"]["runs"] = 200
    path.write_text(json.dumps(artifact))

    assert stale_sources(root) == ["abi/JobEscrow.json (settings)"]


def test_scripts_compile_works_outside_the_virtualenv(tmp_path: Path) -> None:
    """Run by a Python without py-solc-x (the system's), it re-runs itself with .venv's."""
    import os
    import subprocess

    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if system_python is None:
        pytest.skip("no system python3 to run it with")
    probe = subprocess.run([system_python, "-c", "import solcx"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("the system python3 has py-solc-x: nothing to prove")
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    result = subprocess.run(
        [system_python, str(root / "scripts" / "compile"), "--check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "abi/ is up to date" in result.stdout
