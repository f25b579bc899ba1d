"""Set-up shared by the scenarios: signals, temp databases, Redis, migrations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

from benchmarks.harness.report import ROOT

MIGRATE_LIMIT = 300.0


def _terminate(signum: int, frame: Any) -> None:
    # Handled like Ctrl-C: streams closed and servers stopped by their context managers.
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, _terminate)


def migrate(env: dict[str, str]) -> None:
    """``django migrate`` with ``env``'s settings and database (bounded)."""
    full = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env}
    full["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"]
    done = subprocess.run(
        command, cwd=ROOT, env=full, timeout=MIGRATE_LIMIT, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"migrate failed:\n{done.stdout}{done.stderr}")


@contextmanager
def memory_server_env(name: str) -> Iterator[dict[str, str]]:
    """The environment of a test-project server on a fresh migrated SQLite file,
    in-memory layer; the file is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"sse-{name}-") as tmp:
        db = str(Path(tmp) / f"{name}.sqlite3")
        env = {"SSE_TEST_LAYER": "memory", "SSE_TEST_DB": db}
        migrate(env)
        yield env


def redis_url(stack: ExitStack) -> str:
    """``REDIS_URL`` if set, else a private ``redis-server`` kept until ``stack`` closes."""
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    from tests.servers import private_redis

    cm: AbstractContextManager[Any] = private_redis()
    return str(stack.enter_context(cm).url)
