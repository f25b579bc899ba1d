"""The churn benchmark, small: streams that come and go leave nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ROOT, base_env, run_python


def test_churn_returns_to_baseline() -> None:
    args = ["--cycles", "600", "--concurrency", "50", "--warmup", "100"]
    done = subprocess.run(
        [sys.executable, "benchmarks/churn.py", *args],
        cwd=ROOT,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "600 connect/disconnect cycles" in done.stdout
    assert "0 failed" in done.stdout
    assert "| hub streams | 0 | 0 | yes |" in done.stdout
    assert "NO" not in done.stdout


@pytest.mark.timeout(300)
async def test_the_harness_runs_the_floor_and_a_resume_storm_small(tmp_path: Path) -> None:
    """bench.py, small: fan-out to django_sse and the floor, and a resume storm
    (server killed -9 and restarted) in which no client loses or repeats an event."""
    args = [
        "--scenario", "fanout,resume-storm", "--targets", "fast,floor", "--sizes", "20",
        "--rounds", "2", "--storm-targets", "fast", "--storm-streams", "60",
        "--storm-channels", "3", "--storm-phases", "1,1,1", "--storm-backoff", "at-once",
        "--out", str(tmp_path), "--json", str(tmp_path / "all.json"),
    ]  # fmt: skip
    status, out, err = await run_python("benchmarks/bench.py", *args, env={}, timeout=240)
    assert status == 0, out + err
    results = json.loads((tmp_path / "all.json").read_text())
    # Runs are keyed target@server kind, the floor by its event loop.
    for run in ("fast@uvicorn", "floor@asyncio"):
        fan = results["delivery"][run]["fanout"]["20"]
        assert fan["delivered"] == fan["expected"] == 40, fan
    (storm,) = results["resume-storm"]
    assert storm["caught_up"] == storm["clients"] == 60, storm
    # Published before the kill, while down and after the restart: 1/s per channel.
    assert storm["published"] >= 9, storm
    assert storm["delivered"] == storm["expected"], storm
    assert (storm["lost"], storm["duplicated"], storm["out_of_order"]) == (0, 0, 0), storm
    assert storm["overflow"] == 0, storm
    # The restarted server served every resume: it read the store, and fewer
    # times than one per stream (reads are shared among streams at one position).
    assert 0 < storm["store_reads"] < 60, storm
    text = (tmp_path / "resume-storm.md").read_text()
    assert "Command: `.venv/bin/python benchmarks/bench.py --scenario fanout,resume-storm" in text
