"""The churn benchmark, small: streams that come and go leave nothing behind."""

from __future__ import annotations

import subprocess
import sys

from tests.servers import ROOT, base_env


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
