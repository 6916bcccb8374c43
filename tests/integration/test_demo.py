"""``ce-bridge demo`` as a user runs it: it finishes every job as expected, and neither its end
nor Ctrl-C leaves a process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def test_demo_finishes_every_job() -> None:
    result = subprocess.run(
        [CE_BRIDGE, "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every job ended as expected and every result hash matches" in result.stdout
    for kind in ("plain", "callback", "CE fails", "cancelled"):
        assert kind in result.stdout


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
    try:
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not alive, f"processes left behind: {alive}"
    assert not _anvils_with(f"--port\x00{chain_port}")
