"""The pure core stays pure on import: no web3, HTTP or SQL library comes with it.

Each module is imported in a fresh interpreter (a package ``__init__`` that re-exports an I/O
module would drag the library in; an import inside the test process could not tell, since
others loaded it already) and ``sys.modules`` is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Modules that decide without doing I/O: the machine, the plans, the codecs and the rules.
PURE_MODULES = (
    "bridge.engine.machine",
    "bridge.engine.states",
    "bridge.engine.codec",
    "bridge.tx.policy",
    "bridge.tx.plan",
    "bridge.results",
    "bridge.jobdoc",
    "bridge.chain.spec",
    "bridge.chain.address",
    "bridge.chain.submitted",
    "bridge.chain.logs",
    "bridge.remote.convention",
    "bridge.retry",
)

#: Libraries that do I/O (or that only the I/O shells need).
FORBIDDEN = ("web3", "httpx", "urllib3", "sqlalchemy", "sqlmodel", "eth_abi")

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2:])))
"""


@pytest.mark.parametrize("module", PURE_MODULES)
def test_a_pure_module_imports_no_io_library(module: str) -> None:
    found = subprocess.run(
        [sys.executable, "-c", _PROBE, module, *FORBIDDEN],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    loaded = json.loads(found.stdout)
    assert loaded == [], f"importing {module} loads {loaded}"


def test_the_probe_sees_an_io_library() -> None:
    # The check itself can fail: the shell (the engine's service) does load them.
    found = subprocess.run(
        [sys.executable, "-c", _PROBE, "bridge.engine.service", *FORBIDDEN],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert {"web3", "sqlalchemy", "urllib3"} <= set(json.loads(found.stdout))
