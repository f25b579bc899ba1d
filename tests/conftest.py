from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import hypothesis  # noqa: F401  (imported early: see below)
import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.db import connections

from django_sse import dbthreads

# hypothesis is imported above so that pytest does not first compile it during the
# terminal summary, which trips a CPython 3.11 AST recursion-depth bug.
from tests.servers import (
    ROOT,
    RedisServer,
    Server,
    base_env,
    migrate,
    private_redis,
    running_server,
)

SERVER_KINDS = ("daphne", "uvicorn")
#: Streams are served by two doors: the ASGI fast path and Django's view.
DOORS = ("fast", "view")
SERVERS = [(kind, door) for door in DOORS for kind in SERVER_KINDS]


PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def postgres_unavailable() -> str | None:
    """Why PostgreSQL at 127.0.0.1:5432 cannot be used, or ``None``."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=3
        ).close()
    except psycopg.OperationalError as exc:
        return f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}".strip()
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SSE_TEST_POSTGRES"):
        reason = postgres_unavailable()
        if reason:
            skip = pytest.mark.skip(reason=reason)
            for item in items:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_layers() -> Iterator[None]:
    # Layers bind to the event loop of their first use; every test has its own loop.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
    # Store threads keep connections; PostgreSQL cannot drop a test database
    # that is still in use, and no test should see another's connections.
    dbthreads.shutdown()


@pytest.fixture
async def close_db_threads() -> AsyncIterator[None]:
    """Close the connection ``sync_to_async`` opened in its worker thread.

    Left open, it keeps PostgreSQL from dropping the test database."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture(scope="session")
def server_db() -> Iterator[str]:
    """A migrated SQLite file shared by the server processes of a session."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "server.sqlite3")
        migrate(path)
        yield path


@pytest.fixture(scope="session", params=SERVERS, ids=["-".join(p) for p in SERVERS])
def server(request: pytest.FixtureRequest, server_db: str) -> Iterator[Server]:
    """A real daphne or uvicorn process on the in-memory layer, serving streams
    through the fast path or through Django's view."""
    kind, door = request.param
    with running_server(
        kind,
        SSE_TEST_DB=server_db,
        SSE_TEST_LAYER="memory",
        SSE_KEEPALIVE="0.5",
        SSE_TEST_DOOR=door,
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
    """A daphne (view) and a uvicorn (fast path) process sharing one Redis
    through the pub/sub layer."""
    env = {
        "SSE_TEST_DB": server_db,
        "SSE_TEST_LAYER": "redis",
        "REDIS_URL": redis_url,
        "SSE_KEEPALIVE": "0.5",
    }
    # One door each, so events cross from one door's process to the other's.
    with (
        running_server("daphne", **env, SSE_TEST_DOOR="view") as one,
        running_server("uvicorn", **env, SSE_TEST_DOOR="fast") as two,
    ):
        yield one, two


@contextmanager
def throwaway_postgres(prefix: str, **env: str) -> Iterator[str]:
    """A migrated PostgreSQL database of the caller's own (``env`` for the
    migrate command, e.g. another settings module), dropped afterwards."""
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=base_env(**postgres_env(name), **env),
            check=True,
            timeout=120,
        )
        yield name
    finally:
        terminate_connections(name)
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def terminate_connections(dbname: str) -> int:
    """Kill every connection to ``dbname`` but our own; return how many."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [dbname],
        ).fetchall()
    return len(rows)


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """A migrated throwaway PostgreSQL database, dropped afterwards."""
    with throwaway_postgres("sse_hist") as name:
        yield name


def postgres_env(name: str) -> dict[str, str]:
    # SSE_TEST_DB wins over SSE_TEST_POSTGRES in tests/settings.py: blank it.
    return {"SSE_TEST_DB": "", "SSE_TEST_POSTGRES": "1", "SSE_TEST_POSTGRES_DB": name}
