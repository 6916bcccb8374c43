"""The README's reference tables agree with the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def section(text: str, marker: str) -> str:
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    assert start in text and end in text, f"README.md lost its {marker} markers"
    return text.split(start, 1)[1].split(end, 1)[0]


def test_every_metric_is_in_the_readme_and_every_row_is_a_metric() -> None:
    source = (ROOT / "bridge" / "api" / "telemetry.py").read_text()
    defined = set(re.findall(r'"(ce_bridge_[a-z_]+)"', source))
    table = section((ROOT / "README.md").read_text(), "metrics")
    listed = set()
    for name in re.findall(r"^\| `(ce_bridge_[a-z_]+)", table, flags=re.MULTILINE):
        listed.add(name.removesuffix("_total") if name.removesuffix("_total") in defined else name)
    assert defined - listed == set(), "metrics missing from README.md"
    assert listed - defined == set(), "README.md lists metrics the bridge does not export"


def test_no_project_file_refers_to_a_design_file_outside_the_repository() -> None:
    """Integrators read docs/PROTOCOL.md; the project's files point there."""
    design = "DESIGN" + ".md"  # spelt in two parts so this file does not name it either
    offenders = []
    for folder in ("bridge", "tests", "scripts", "examples", "contracts", "bench", "dapp/src"):
        for path in (ROOT / folder).rglob("*"):
            hidden = any(part.startswith(".") for part in path.relative_to(ROOT).parts)
            suffixes = (".py", ".md", ".service", ".json", ".sol", ".ts", ".mjs", ".js", "")
            if path.is_file() and not hidden and path.suffix in suffixes:
                text = path.read_text(errors="replace")
                if design in text:
                    offenders.append(str(path.relative_to(ROOT)))
    for name in (
        "README.md",
        "docs/ARCHITECTURE.md",
        "docs/PROTOCOL.md",
        "docs/GAS.md",
        "docs/BENCHMARKS.md",
        "docs/RUNBOOK.md",
        "foundry.toml",
    ):
        if design in (ROOT / name).read_text():
            offenders.append(name)
    assert offenders == []
