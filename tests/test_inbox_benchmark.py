"""The inbox benchmark, tiny: it runs and prints its tables (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys

from tests.servers import ROOT, base_env


def test_inbox_benchmark_runs_on_sqlite() -> None:
    args = ["--users", "50", "--events", "200", "--rows", "500", "--count-users", "20"]
    done = subprocess.run(
        [sys.executable, "benchmarks/inbox.py", *args, "--repeat", "1", "--no-postgres"],
        cwd=ROOT,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "notify() to 50 users" in done.stdout
    assert "| SQLite (WAL) |" in done.stdout
    assert "Unread count at 500 rows for 20 users" in done.stdout
