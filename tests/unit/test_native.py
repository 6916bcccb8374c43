"""Which build of the JobSubmitted decoder runs, and that both builds give the same answers.

``scripts/setup`` compiles ``bridge/chain/submitted.py`` with mypyc (``scripts/build-native``),
and stamps ``.venv/.ce-bridge-native`` with the SHA-256 of the source it compiled; Python's
import then prefers the extension. Where it was built, the compiled module must be the one
loaded, and built from the current source (a stale extension would run old code); where it was
not, the pure module runs and no extension lies beside it. The fuzz tests against eth_abi
(``test_submitted_decoder.py``) run on the loaded module; here the pure source, loaded on its
own, must give the loaded module's answers on the same generators.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import bridge.chain.submitted as loaded
from bridge.chain.reader import decoder_build
from tests.unit.test_submitted_decoder import mutate, random_data

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "bridge" / "chain" / "submitted.py"
STAMP = ROOT / ".venv" / ".ce-bridge-native"


def _pure() -> ModuleType:
    """``bridge/chain/submitted.py`` run as Python source, whatever build is installed."""
    spec = importlib.util.spec_from_file_location("bridge.chain._submitted_source", SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_compiled_decoder_is_loaded_where_setup_built_it() -> None:
    if STAMP.exists():
        stamped = json.loads(STAMP.read_text())
        source = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
        assert stamped.get("bridge/chain/submitted.py") == source, (
            "the compiled decoder was built from another version of submitted.py: "
            "run scripts/setup (or scripts/build-native)"
        )
        assert not str(loaded.__file__).endswith(".py"), f"{loaded.__file__} is not compiled"
        assert decoder_build() == "mypyc"
    else:
        assert str(loaded.__file__).endswith(".py"), f"{loaded.__file__} runs without a stamp"
        assert decoder_build() == "python"


def _answer(module: Any, data: bytes) -> object:
    try:
        return module.decode_submitted(data)
    except module.LogDecodingError as exc:
        return ("refused", str(exc))


def test_the_pure_source_answers_as_the_loaded_module_does() -> None:
    pure = _pure()
    rng = random.Random(4242)
    for i in range(1500):
        data = random_data(rng)
        if i % 3:
            data = mutate(rng, data)
        if i % 7 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(600)))
        mine, theirs = _answer(pure, data), _answer(loaded, data)
        if isinstance(mine, tuple) and mine[0] == "refused":
            assert isinstance(theirs, tuple) and theirs[0] == "refused", data.hex()
        else:
            assert mine == theirs, data.hex()


def test_both_builds_read_a_raw_log_alike() -> None:
    pure = _pure()
    rng = random.Random(99)
    for job_id in range(50):
        entry = {
            "topics": [
                "0x" + "ab" * 32,
                "0x" + job_id.to_bytes(32, "big").hex(),
                "0x" + bytes(12).hex() + bytes([job_id % 5 + 1] * 20).hex(),
            ],
            "data": "0x" + random_data(rng).hex(),
            "blockNumber": hex(job_id + 7),
            "blockHash": "0x" + "CD" * 32,
            "transactionHash": "0x" + "Ef" * 32,
            "logIndex": hex(job_id),
        }
        assert pure.submitted_log(entry) == loaded.submitted_log(entry)


def test_both_builds_find_floats_in_parsed_json_alike() -> None:
    pure = _pure()
    nested: Any = 0.5
    for _ in range(50):
        nested = {"a": [nested]}
    values: list[Any] = [
        1.5,
        2**70,
        None,
        "0x1",
        {"result": [{"topics": ["0x1"], "removed": False}] * 3},
        {"error": {"code": -32000, "data": 1.2e28}},
        [[[]], {}, [True, 0]],
        nested,
    ]
    for value in values:
        assert pure.json_has_float(value) == loaded.json_has_float(value), value


def _build_native() -> ModuleType:
    """``scripts/build-native`` as a module (its file has no ``.py``)."""
    path = str(ROOT / "scripts" / "build-native")
    loader = importlib.machinery.SourceFileLoader("build_native", path)
    spec = importlib.util.spec_from_loader("build_native", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_build_is_skipped_at_once_without_a_c_compiler(monkeypatch: Any) -> None:
    """No compiler on PATH: ``compiler()`` says so (setup then skips the mypyc build, which
    would type-check for 10-30 s before failing); one named by ``CC`` is found on PATH."""
    build_native = _build_native()
    monkeypatch.setenv("CC", "no-such-compiler-ce-bridge --flag")
    assert build_native.compiler() is None
    monkeypatch.setenv("CC", f"{sys.executable} -O")  # any program on PATH stands in
    assert build_native.compiler() == sys.executable
