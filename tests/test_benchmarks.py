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


def test_server_kinds_are_explicit_command_lines() -> None:
    """uvicorn's ``auto`` would pick httptools and uvloop once installed: each kind names both."""
    from tests.servers import server_command

    def after(command: list[str], flag: str) -> str:
        return command[command.index(flag) + 1]

    h11 = server_command("uvicorn", 8000)
    assert (after(h11, "--http"), after(h11, "--loop")) == ("h11", "asyncio")
    fast = server_command("uvicorn-httptools", 8000)
    assert (after(fast, "--http"), after(fast, "--loop")) == ("httptools", "uvloop")
    assert "daphne" in server_command("daphne", 8000)
    with pytest.raises(ValueError, match="unknown server kind"):
        server_command("hypercorn", 8000)


@pytest.mark.timeout(300)
async def test_the_harness_runs_two_server_kinds_and_several_processes_small(
    tmp_path: Path,
) -> None:
    """bench.py, small: fan-out under uvicorn h11 and httptools+uvloop with the
    floor on each loop, and 2 processes behind nginx fed by 2 load-client processes."""
    args = [
        "--scenario", "fanout,multi-process", "--targets", "fast,floor",
        "--server", "uvicorn,uvicorn-httptools", "--sizes", "20", "--rounds", "2",
        "--mp-processes", "2", "--mp-streams", "40", "--mp-rounds", "2", "--mp-clients", "2",
        "--out", str(tmp_path), "--json", str(tmp_path / "all.json"),
    ]  # fmt: skip
    status, out, err = await run_python("benchmarks/bench.py", *args, env={}, timeout=280)
    assert status == 0, out + err
    results = json.loads((tmp_path / "all.json").read_text())
    runs = ("fast@uvicorn", "floor@asyncio", "fast@uvicorn-httptools", "floor@uvloop")
    assert sorted(results["delivery"]) == sorted(runs)
    for run in runs:
        fan = results["delivery"][run]["fanout"]["20"]
        assert fan["delivered"] == fan["expected"] == 40, (run, fan)
    table = (tmp_path / "fanout.md").read_text()
    assert "| 20 | django_sse (fast path), uvicorn httptools+uvloop | 40/40 |" in table
    assert "| 20 | floor (uvloop) | 40/40 |" in table
    (mp,) = results["multi-process"]
    assert (mp["connected"], mp["client_processes"]) == (40, 2), mp
    assert mp["delivered"] == mp["expected"] == 80, mp
    # nginx spread the streams over both processes; the burst reached both.
    assert sum(mp["per_process"]) == 40 and min(mp["per_process"]) > 0, mp
    assert mp["redis"]["subscribed_processes"] == 2, mp
    assert mp["redis"]["complete"] == 2, mp
