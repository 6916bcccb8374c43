"""``ce-bridge demo`` as a user runs it: it finishes every job as expected, and neither its end
nor Ctrl-C leaves a process behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from eth_account import Account

from bridge.devchain import free_port

CE_BRIDGE = str(Path(sys.executable).parent / "ce-bridge")


def _children_of(pid: int) -> set[int]:
    """Every live process whose ancestry includes ``pid``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _anvils_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "anvil" in cmdline and marker in cmdline:
                pids.append(int(entry.name))
    return pids


def _stopped(process: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str]:
    """Waits for ``process`` to exit after a signal, reading what it still prints (a child
    writing into a pipe nobody reads blocks once the pipe is full, and never exits): its exit
    status and that output. On a timeout it is asked for its threads' stacks (SIGUSR1), killed,
    and the test fails with the output."""
    try:
        printed, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGUSR1)  # every thread's stack, to the output
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=3)
        process.kill()
        printed, _ = process.communicate()  # everything since the test stopped reading
        raise AssertionError(
            f"not stopped {timeout:g} s after the signal; its last output (the threads' "
            "stacks at the end):\n" + (printed or "")[-12000:]
        ) from None
    return process.returncode, printed or ""


def test_demo_finishes_every_job() -> None:
    """In an 80-column terminal (many terminals' default) the final table is whole: every
    column and word in full, no line wider, and the failed job's reason under it."""
    result = subprocess.run(
        [CE_BRIDGE, "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every job ended as expected and every result hash matches" in result.stdout
    final = result.stdout[result.stdout.rindex("jobs on-chain (final)") :]
    header = ("job", "kind", "on-chain", "bridge", "result hash", "verified", "callback")
    assert re.search(r"\s+".join(header), final), final
    rows = {
        kind: re.search(rf"^\s*\d+\s+{kind}\s+(\w+)\s+(\w+)", final, re.MULTILINE)
        for kind in ("plain", "callback", "CE fails", "cancelled")
    }
    found = {kind: row.groups() if row else None for kind, row in rows.items()}
    assert found == {
        "plain": ("completed", "settled"),
        "callback": ("completed", "settled"),
        "CE fails": ("failed", "settled"),
        "cancelled": ("cancelled", "settled"),
    }, final
    assert "received" in final
    assert re.search(r"job \d+: remote job failed: ", final), final
    # Nothing cut short but the result hashes.
    assert "…" not in re.sub(r"0x[0-9a-f]+…", "", final), final
    assert max(len(line) for line in final.splitlines()) <= 80, final


def test_ctrl_c_leaves_no_process_behind() -> None:
    process = subprocess.Popen(
        [CE_BRIDGE, "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    chain_port = ""
    deadline = time.monotonic() + 120
    for line in process.stdout:
        if "chain" in line and "127.0.0.1:" in line:
            chain_port = line.split("127.0.0.1:")[1].split()[0]
        if "Submitted" in line or time.monotonic() > deadline:
            break
    assert chain_port, "the demo did not print its chain URL"
    assert _anvils_with(f"--port\x00{chain_port}"), "anvil should be running mid-demo"
    children = _children_of(process.pid)
    os.kill(process.pid, signal.SIGINT)
    _stopped(process)  # whatever its exit status: no process may be left behind
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not alive, f"processes left behind: {alive}"
    assert not _anvils_with(f"--port\x00{chain_port}")


def test_demo_serve_keeps_the_stack_up_for_a_browser_until_ctrl_c() -> None:
    port = free_port()
    process = subprocess.Popen(
        [CE_BRIDGE, "demo", "--serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert process.stdout is not None
    printed = []
    for line in process.stdout:
        printed.append(line)
        if "Ctrl-C stops everything" in line:
            break
    text = "".join(printed)
    try:
        page = re.search(r"dapp\s+(http://\S+/app/)", text)
        rpc = re.search(r"RPC URL\s+(http://\S+)\s+chain id (\d+)", text)
        key = re.search(r"development key: (0x[0-9a-f]{64})", text)
        assert page and rpc and key, text
        assert page.group(1) == f"http://127.0.0.1:{port}/app/"
        children = _children_of(process.pid)
        with httpx.Client(timeout=10) as http:
            assert 'data-testid="connect"' in http.get(page.group(1)).text
            config = http.get(page.group(1) + "config.json").json()
            assert config["chainId"] == int(rpc.group(2))
            assert config["rpcUrl"] == rpc.group(1)
            address = Account.from_key(key.group(1)).address
            balance = http.post(
                rpc.group(1),
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "eth_getBalance",
                    "params": [address, "latest"],
                },
            ).json()["result"]
            assert int(balance, 16) > 10**18, "the printed key is not funded"
        # SIGUSR1 prints every thread's stack and changes nothing else (the diagnosis of a
        # stop that hangs, here and in `ce-bridge run`).
        os.kill(process.pid, signal.SIGUSR1)
        os.kill(process.pid, signal.SIGINT)
        code, output = _stopped(process)
        assert code == 0, output
        assert "(most recent call first)" in output, output[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not alive, f"processes left behind: {alive}"
