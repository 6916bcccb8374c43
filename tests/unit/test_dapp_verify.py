"""The dapp's in-browser result hash (dapp/src/verify.ts) agrees with the bridge's (results.py).

verify.ts is bundled by esbuild and run by node (its WebCrypto and TextEncoder are the
browser's APIs), on paths whose UTF-8 order differs from JavaScript's UTF-16 string order.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bridge.chain.artifacts import REPO_ROOT
from bridge.results import build_manifest, result_hash

ESBUILD = REPO_ROOT / "node_modules" / ".bin" / "esbuild"
RUNNER = """
import { manifestOf, resultHashOf } from "./verify.mjs";
const files = JSON.parse(process.argv[2]).map(([path, b64]) => ({
  path, bytes: new Uint8Array(Buffer.from(b64, "base64")),
}));
console.log(JSON.stringify({ manifest: await manifestOf(files), hash: await resultHashOf(files) }));
"""

FILES = {
    "z.txt": b"last in ASCII\n",
    "Z.txt": b"upper case sorts first\n",
    "\uff71.txt": b"U+FF71: before U+1D49C in UTF-8, after it in UTF-16\n",
    "\U0001d49c.txt": b"U+1D49C, a surrogate pair in JavaScript\n",
    "\u00e9t\u00e9/r\u00e9sultat.csv": b"a,b\n1,2\n",
    "a/b/c.bin": bytes(range(256)),
    "empty": b"",
}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_browser_manifest_and_hash_are_the_bridges(tmp_path: Path) -> None:
    if not ESBUILD.exists():
        pytest.skip("esbuild is not installed: run scripts/setup")
    subprocess.run(
        [
            str(ESBUILD),
            str(REPO_ROOT / "dapp" / "src" / "verify.ts"),
            "--format=esm",
            f"--outfile={tmp_path / 'verify.mjs'}",
            "--log-level=warning",
        ],
        check=True,
        timeout=60,
    )
    (tmp_path / "run.mjs").write_text(RUNNER)
    files = [[path, base64.b64encode(content).decode()] for path, content in FILES.items()]
    done = subprocess.run(
        ["node", str(tmp_path / "run.mjs"), json.dumps(files)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    answer = json.loads(done.stdout)
    assert answer["manifest"].encode() == build_manifest(FILES)
    assert answer["hash"] == "0x" + result_hash(FILES).hex()
    ordered = [line.split("  ", 1)[1] for line in answer["manifest"].splitlines()]
    assert ordered.index("\uff71.txt") < ordered.index("\U0001d49c.txt")
