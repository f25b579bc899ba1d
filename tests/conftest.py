from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import hypothesis  # noqa: F401  (imported early: see below)
import pytest
from channels.layers import channel_layers

# hypothesis is imported above so that pytest does not first compile it during the
# terminal summary, which trips a CPython 3.11 AST recursion-depth bug.
from tests.servers import RedisServer, Server, migrate, private_redis, running_server

SERVER_KINDS = ("daphne", "uvicorn")


@pytest.fixture(autouse=True)
def _fresh_layers() -> Iterator[None]:
    # Layers bind to the event loop of their first use; every test has its own loop.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(scope="session")
def server_db() -> Iterator[str]:
    """A migrated SQLite file shared by the server processes of a session."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "server.sqlite3")
        migrate(path)
        yield path


@pytest.fixture(scope="session", params=SERVER_KINDS)
def server(request: pytest.FixtureRequest, server_db: str) -> Iterator[Server]:
    """A real daphne or uvicorn process on the in-memory layer."""
    with running_server(
        request.param, SSE_TEST_DB=server_db, SSE_TEST_LAYER="memory", SSE_KEEPALIVE="0.5"
    ) as srv:
        yield srv


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``REDIS_URL`` when set, else a private redis-server started for the session."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with private_redis() as redis:
        yield redis.url


@pytest.fixture
def private_redis_server() -> Iterator[RedisServer]:
    """A Redis of this test's own, which the test may kill and restart."""
    with private_redis() as redis:
        yield redis


@pytest.fixture(scope="session")
def redis_servers(server_db: str, redis_url: str) -> Iterator[tuple[Server, Server]]:
    """A daphne and a uvicorn process sharing one Redis through the pub/sub layer."""
    env = {
        "SSE_TEST_DB": server_db,
        "SSE_TEST_LAYER": "redis",
        "REDIS_URL": redis_url,
        "SSE_KEEPALIVE": "0.5",
    }
    with running_server("daphne", **env) as one, running_server("uvicorn", **env) as two:
        yield one, two
