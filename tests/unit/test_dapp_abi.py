"""abi/JobEscrow.abi.json and abi/JobEscrow.ts (for dapps) hold the ABI of abi/JobEscrow.json."""

from __future__ import annotations

import json

from bridge.chain.artifacts import ABI_DIR


def test_the_bare_and_typed_abis_match_the_artifact() -> None:
    abi = json.loads((ABI_DIR / "JobEscrow.json").read_text())["abi"]
    assert json.loads((ABI_DIR / "JobEscrow.abi.json").read_text()) == abi
    typed = (ABI_DIR / "JobEscrow.ts").read_text()
    prefix = "export const jobEscrowAbi = "
    body = typed[typed.index(prefix) + len(prefix) :]
    assert body.rstrip().endswith("] as const;"), "the typed ABI must be `as const`"
    assert json.loads(body.rstrip().removesuffix(" as const;")) == abi
    events = {e["name"] for e in abi if e["type"] == "event"}
    assert {"JobSubmitted", "JobCompleted", "Credited"} <= events
