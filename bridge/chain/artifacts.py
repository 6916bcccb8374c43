"""Compiled contract artifacts: building them (scripts/compile) and loading them (everything else).

An artifact (``abi/<Contract>.json``) holds the ABI, creation and runtime bytecode, the compiler
version and settings, and the sha256 of every source file that went into it. ``stale_sources``
compares those hashes with the files on disk, so a test fails when ``abi/`` no longer matches
``contracts/``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from bridge.errors import ConfigError

SOLC_VERSION = "0.8.28"
CONTRACTS = ("JobEscrow", "ExampleConsumer")
SOURCES = {
    "JobEscrow": "contracts/JobEscrow.sol",
    "ExampleConsumer": "contracts/examples/ExampleConsumer.sol",
}
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 10_000},
    "evmVersion": "cancun",
    "remappings": ["@openzeppelin/contracts/=node_modules/@openzeppelin/contracts/"],
    "outputSelection": {
        "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]},
    },
}
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
ABI_DIR = REPO_ROOT / "abi"


@dataclass(frozen=True)
class Artifact:
    """A compiled contract as stored under abi/."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _solc_binary(root: Path) -> Path:
    """A native solc of the pinned version when on PATH, else the solc-js shim."""
    native = shutil.which("solc")
    if native:
        import subprocess

        out = subprocess.run([native, "--version"], capture_output=True, text=True, check=False)
        if f"Version: {SOLC_VERSION}" in out.stdout:
            return Path(native)
    shim = root / "scripts" / "solc-shim.js"
    if not (root / "node_modules" / "solc").exists():
        raise ConfigError("solc-js is not installed: run `npm ci` in the repository root")
    return shim


def build_artifacts(root: Path) -> dict[str, dict[str, Any]]:
    """Compiles every contract of ``CONTRACTS`` and returns their artifacts as JSON-ready dicts."""
    import solcx

    sources = {rel: {"content": (root / rel).read_text()} for rel in SOURCES.values()}
    standard_input = {"language": "Solidity", "sources": sources, "settings": SETTINGS}
    output = solcx.compile_standard(
        standard_input,
        base_path=str(root),
        allow_paths=[str(root)],
        solc_binary=str(_solc_binary(root)),
    )
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise RuntimeError("\n".join(e["formattedMessage"] for e in errors))
    used = sorted(output["sources"])
    hashes = {name: _sha256(root / name) for name in used}
    built: dict[str, dict[str, Any]] = {}
    for name, rel in SOURCES.items():
        contract = output["contracts"][rel][name]
        built[name] = {
            "contractName": name,
            "sourceName": rel,
            "abi": contract["abi"],
            "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
            "compiler": {"version": SOLC_VERSION, "settings": SETTINGS},
            "sources": hashes,
        }
    return built


def write_artifacts(
    abi_dir: Path, built: dict[str, dict[str, Any]], *, dry_run: bool = False
) -> list[str]:
    """Writes the artifacts that differ from abi/; returns their names (dry_run: writes none)."""
    changed = []
    for name, artifact in built.items():
        path = abi_dir / f"{name}.json"
        text = json.dumps(artifact, indent=2, sort_keys=True) + "\n"
        if not path.exists() or path.read_text() != text:
            changed.append(name)
            if not dry_run:
                abi_dir.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return changed


def stale_sources(root: Path = REPO_ROOT) -> list[str]:
    """Source files whose content no longer matches the hashes recorded in abi/ (or missing ones).

    Also reports a ``.sol`` file under contracts/ (outside contracts/test) that no artifact covers.
    """
    stale: set[str] = set()
    covered: set[str] = set()
    for name in CONTRACTS:
        path = root / "abi" / f"{name}.json"
        if not path.exists():
            stale.add(f"abi/{name}.json (missing)")
            continue
        recorded = json.loads(path.read_text())
        if recorded["compiler"]["settings"] != SETTINGS:
            stale.add(f"abi/{name}.json (settings)")
        for source, digest in recorded["sources"].items():
            covered.add(source)
            file = root / source
            if not file.exists() or _sha256(file) != digest:
                stale.add(source)
    for file in (root / "contracts").rglob("*.sol"):
        rel = file.relative_to(root).as_posix()
        if not rel.startswith("contracts/test/") and rel not in covered:
            stale.add(f"{rel} (not compiled)")
    return sorted(stale)


@cache
def load_artifact(name: str, abi_dir: Path = ABI_DIR) -> Artifact:
    """Loads ``abi/<name>.json``; raises ConfigError when it is missing."""
    path = abi_dir / f"{name}.json"
    if not path.exists():
        raise ConfigError(f"contract artifact {path} is missing: run scripts/compile")
    data = json.loads(path.read_text())
    return Artifact(
        name=name,
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
    )
