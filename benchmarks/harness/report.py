"""Markdown tables and where they go: ``docs/benchmarks/<scenario>.md`` (which
docs/benchmarks.rst includes), each headed by the command that produced it."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
OUT = ROOT / "docs" / "benchmarks"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def finite(value: Any) -> Any:
    """NaN (nothing measured) becomes ``null``, so the JSON is standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def table(header: list[str], rows: list[list[Any]], digits: int = 1) -> list[str]:
    """A markdown table; numbers right-aligned, the first column left."""
    out = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        out.append("| " + " | ".join(fmt(v, digits) for v in row) + " |")
    return out


def machine() -> str:
    cpus = os.cpu_count()
    load = os.getloadavg()[0]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (
        f"{cpus} CPUs, load average {load:.1f} at the start (a shared machine, other "
        f"work running), Python {sys.version.split()[0]}, {when}"
    )


def command(argv: list[str]) -> str:
    return " ".join([".venv/bin/python", "benchmarks/bench.py", *argv])


def write(out: Path, name: str, title: str, argv: list[str], body: list[str]) -> Path:
    """Write ``<out>/<name>.md``: title, machine, command, then the tables."""
    text = "\n".join(
        [f"{title}.", "", f"Measured on {machine()}.", "", f"Command: `{command(argv)}`", "", *body]
    )
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.md"
    path.write_text(text.rstrip() + "\n")
    return path


def write_json(path: Path, results: Any) -> None:
    path.write_text(json.dumps(finite(results), indent=2, default=str) + "\n")
