"""The servers a scenario can run against, each started fresh per scenario.

* ``fast``: django_sse through the ASGI fast path (``tests.asgi``).
* ``view``: django_sse through the Django view (``SSE_TEST_DOOR=view``, one
  thread per stream; not run beyond ``VIEW_MAX_STREAMS``).
* ``floor``: the do-nothing asyncio server (:mod:`benchmarks.harness.floor`), on
  plain asyncio or on uvloop: the loop of the server kind it is compared with.
* ``asgi``: a do-nothing ASGI application (:mod:`benchmarks.harness.asgi_floor`)
  under the same server: the server's own share of every figure.
* ``peer``: django-eventstream 5.3.4, in-process listener, no storage
  (``benchmarks/peer/``, the ``bench`` extra).
* ``peer-db``: the same with ``DjangoModelStorage``.

Every server gets its own migrated SQLite file (WAL, synchronous=NORMAL, as in
tests/settings.py and benchmarks/peer/settings.py) and is pinned to the first
core when there are two; the load client takes the other.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import measure
from benchmarks.harness.setup import migrate
from tests.servers import Server

VIEW_MAX_STREAMS = 3000
PEER_APP = "benchmarks.peer.asgi:application"
PEER_SETTINGS = "benchmarks.peer.settings"


@dataclass
class Target:
    key: str
    label: str
    app: str = "tests.asgi:application"
    env: dict[str, str] = field(default_factory=dict)
    #: Larger scenarios are skipped, for ``skip_reason``.
    max_streams: int = 10**9
    skip_reason: str = ""
    #: Has a history store and resumes from ``Last-Event-ID``.
    resumes: bool = True

    @property
    def django(self) -> bool:
        return self.key not in ("floor", "asgi")

    @property
    def ours(self) -> bool:
        return self.key in ("fast", "view")


TARGETS: dict[str, Target] = {
    t.key: t
    for t in [
        Target("fast", "django_sse (fast path)"),
        Target(
            "view",
            "django_sse (view)",
            env={"SSE_TEST_DOOR": "view"},
            max_streams=VIEW_MAX_STREAMS,
            skip_reason="one thread per stream",
        ),
        Target("floor", "floor (do-nothing asyncio)", app="", resumes=False),
        Target(
            "asgi",
            "do-nothing ASGI app",
            app="benchmarks.harness.asgi_floor:application",
            resumes=False,
        ),
        Target(
            "peer",
            "django-eventstream 5.3.4",
            app=PEER_APP,
            env={"DJANGO_SETTINGS_MODULE": PEER_SETTINGS},
            resumes=False,
        ),
        Target(
            "peer-db",
            "django-eventstream, DjangoModelStorage",
            app=PEER_APP,
            env={"DJANGO_SETTINGS_MODULE": PEER_SETTINGS, "PEER_STORAGE": "1"},
        ),
    ]
}


def parse(keys: str) -> list[Target]:
    out = []
    for key in (k.strip() for k in keys.split(",") if k.strip()):
        if key not in TARGETS:
            raise SystemExit(f"unknown target {key!r}; known: {', '.join(TARGETS)}")
        out.append(TARGETS[key])
    return out


@contextmanager
def database(
    target: Target, layer: str = "memory", redis_url: str = ""
) -> Iterator[dict[str, str]]:
    """The environment of ``target``'s servers and publishers: its own migrated
    SQLite file and the channel layer (``memory`` or ``redis``)."""
    with tempfile.TemporaryDirectory(prefix=f"sse-bench-{target.key}-") as tmp:
        db = str(Path(tmp) / "db.sqlite3")
        env = {**target.env, "SSE_TEST_DB": db, "PEER_DB": db, "SSE_TEST_LAYER": layer}
        if redis_url:
            env["REDIS_URL"] = redis_url
            # django-eventstream's own cross-process notification.
            env["PEER_REDIS_URL"] = redis_url
        if target.django:
            migrate(env)
        yield env


def spawn_floor(
    port: int, env: dict[str, str], log: Path, loop: str = "asyncio"
) -> subprocess.Popen[bytes]:
    from tests.servers import ROOT, START_TIMEOUT, stop, wait_for_port

    command = [sys.executable, "-m", "benchmarks.harness.floor", str(port), "--loop", loop]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, START_TIMEOUT)
    except Exception:
        stop(proc)
        raise
    return proc


@contextmanager
def running(target: Target, env: dict[str, str], kind: str = "uvicorn") -> Iterator[Server]:
    """``target``'s server, pinned. ``kind`` is one of ``tests.servers.SERVER_KINDS``;
    the floor is its own server, on the event loop ``kind`` runs on."""
    from tests.servers import base_env, free_port, running_server, server_loop, stop

    if target.key == "floor":
        port = free_port()
        full = base_env(**env)
        with tempfile.NamedTemporaryFile(prefix="floor-", suffix=".log", delete=False) as f:
            log = Path(f.name)
        proc = spawn_floor(port, full, log, server_loop(kind))
        server = Server("floor", port, proc, full, log)
        try:
            measure.pin_server(server.proc.pid)
            yield server
        finally:
            stop(server.proc)
            log.unlink(missing_ok=True)
        return
    with running_server(kind, app=target.app, **env) as server:
        measure.pin_server(server.proc.pid)
        yield server
