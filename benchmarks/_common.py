"""Set-up shared by the benchmark scripts that run one server on a temp database."""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _terminate(signum: int, frame: Any) -> None:
    # Handled like Ctrl-C: streams closed and servers stopped by their context managers.
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, _terminate)


@contextmanager
def memory_server_env(name: str) -> Iterator[dict[str, str]]:
    """The environment of a test-project server on a fresh migrated SQLite file,
    in-memory layer; the file is removed afterwards."""
    from tests.servers import migrate

    with tempfile.TemporaryDirectory(prefix=f"sse-{name}-") as tmp:
        db = str(Path(tmp) / f"{name}.sqlite3")
        migrate(db)
        yield {"SSE_TEST_LAYER": "memory", "SSE_TEST_DB": db}
