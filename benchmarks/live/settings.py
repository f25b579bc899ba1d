"""``tests.settings`` with the timed-send view; ``BENCH_SQLITE_INIT`` replaces
the SQLite ``init_command`` (empty: SQLite's defaults, rollback journal)."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

ROOT_URLCONF = "benchmarks.live.urls"
if "BENCH_SQLITE_INIT" in os.environ and "sqlite" in DATABASES["default"]["ENGINE"]:
    DATABASES["default"]["OPTIONS"] = {"init_command": os.environ["BENCH_SQLITE_INIT"]}
