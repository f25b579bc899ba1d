"""The fault-injection harness: servers, publishers and load clients as real
processes, and the count of what every client saw against the store.

A scenario publishes numbered events on a few channels of its own (``fault:*``)
from publisher processes, injects a fault into a server, Redis or PostgreSQL,
and asks the load-client process for every client's record. Each event a
client saw carries its channel's sequence number (from its ``id:``) and its
payload, which must be the store's row at that number. For each client and
channel, every number from 1 to the store's head must have arrived once, in
order, unless a ``stream-reset`` explained its absence.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import ROOT, Server, base_env, free_port, spawn_server, stop, wait_for_port

#: ``SSE_FAULTS_LONG=1`` runs the long variant (1,000+ streams) by hand.
LONG = os.environ.get("SSE_FAULTS_LONG") == "1"
SETTINGS = "tests.faults.settings"
#: Rows of the table printed at the end of the session (see conftest.py).
TABLE: list[Counts] = []


# -- counting ------------------------------------------------------------------


@dataclass
class Counts:
    scenario: str
    server: str
    clients: int = 0
    published: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    mismatched: int = 0
    resets: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    closes: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    note: str = ""
    test: str = ""
    #: A few of the silent gaps, for the failure message.
    gaps: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """0 lost, 0 duplicated, 0 out of order, every payload the store's."""
        return not (self.lost or self.duplicated or self.out_of_order or self.mismatched)

    def line(self) -> str:
        closes = ",".join(f"{k}:{v}" for k, v in sorted(self.closes.items())) or "-"
        refused = ",".join(f"{k}:{v}" for k, v in sorted(self.statuses.items()) if k != "200")
        return (
            f"{self.scenario} [{self.server}] clients={self.clients} "
            f"published={self.published} delivered={self.delivered} lost={self.lost} "
            f"duplicated={self.duplicated} out_of_order={self.out_of_order} "
            f"mismatched={self.mismatched} resets={self.resets} "
            f"reconnects={self.reconnects} seconds={self.seconds:.1f} closes={closes}"
            + (f" statuses={refused}" if refused else "")
            + (f" note={self.note}" if self.note else "")
            + (f" gaps={self.gaps}" if self.gaps else "")
        )


def score(
    counts: Counts,
    records: list[dict[str, Any]],
    heads: dict[str, int],
    rows: dict[str, dict[int, tuple[str, int]]],
) -> Counts:
    """Fill ``counts`` from the clients' ``records`` against the store
    (``heads``: last sequence number per channel; ``rows``: payload per number)."""
    counts.clients = len(records)
    counts.published = sum(heads.values())
    for index, record in enumerate(records):
        channels = record["channels"]
        pos = dict.fromkeys(channels, 0)
        received: dict[str, set[int]] = {c: set() for c in channels}
        excused: dict[str, set[int]] = {c: set() for c in channels}
        for item in record["timeline"]:
            if item[0] == "reset":
                counts.resets += 1
                moved = item[2] or {}
                for c in channels:
                    # A reset explains what lies between where the client stood
                    # and where the reset puts it.
                    to = moved.get(c, pos[c])
                    excused[c].update(range(pos[c] + 1, to + 1))
                    pos[c] = max(pos[c], to)
                continue
            _, channel, seq, tag, n = item
            counts.delivered += 1
            if channel not in received or seq < 1:
                counts.mismatched += 1
                continue
            row = rows.get(channel, {}).get(seq)
            if row is not None and row != (tag, n):
                counts.mismatched += 1
            if seq in received[channel]:
                counts.duplicated += 1
            elif seq < pos[channel]:
                counts.out_of_order += 1
            received[channel].add(seq)
            pos[channel] = max(pos[channel], seq)
        for c in channels:
            wanted = set(range(1, heads.get(c, 0) + 1))
            missing = sorted(wanted - received[c] - excused[c])
            counts.lost += len(missing)
            if missing and len(counts.gaps) < 3:
                counts.gaps.append(
                    f"client {index} {c}: missing {_ranges(missing)}, resets "
                    f"{[i[1:] for i in record['timeline'] if i[0] == 'reset']}"
                )
        for reason, k in record["closes"].items():
            counts.closes[reason] = counts.closes.get(reason, 0) + k
        for status, k in record["statuses"].items():
            counts.statuses[status] = counts.statuses.get(status, 0) + k
        # Streams opened again (attempts refused while a server was down aside).
        counts.reconnects += max(record["connects"] - 1, 0)
        if record["refused"]:
            counts.statuses["refused"] = counts.statuses.get("refused", 0) + record["refused"]
    return counts


def _ranges(numbers: list[int]) -> str:
    out: list[str] = []
    for n in numbers:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = out[-1].split("-")[0] + f"-{n}"
        else:
            out.append(str(n))
    return ",".join(out)


def sqlite_store(
    path: str, channels: list[str]
) -> tuple[dict[str, int], dict[str, dict[int, Any]]]:
    """Heads and ``{seq: (tag, n)}`` of ``channels`` in the SQLite store at ``path``."""
    with sqlite3.connect(path, timeout=30) as conn:
        return _store(conn.execute, channels, "?")


def postgres_store(dbname: str, channels: list[str]) -> tuple[dict[str, int], dict[str, Any]]:
    import psycopg

    dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={dbname}"
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return _store(conn.execute, channels, "%s")


def _store(execute: Any, channels: list[str], mark: str) -> tuple[dict[str, int], dict[str, Any]]:
    heads = dict.fromkeys(channels, 0)
    rows: dict[str, dict[int, tuple[str, int]]] = {c: {} for c in channels}
    for channel in channels:
        found = execute(
            f"SELECT last_seq FROM django_sse_channelsequence WHERE channel = {mark}", [channel]
        ).fetchall()
        heads[channel] = int(found[0][0]) if found else 0
        for seq, payload in execute(
            f"SELECT seq, payload FROM django_sse_storedevent WHERE channel = {mark}", [channel]
        ).fetchall():
            data = json.loads(payload)
            rows[channel][int(seq)] = (data["tag"], data["n"])
    return heads, rows


def ledger_matches(
    heads: dict[str, int], rows: dict[str, dict[int, Any]], batches: list[tuple[str, int]]
) -> bool:
    """Whether each channel's store holds the published ``(tag, count)`` batches,
    numbered from 1 in publishing order (pruned rows aside)."""
    expected = [(tag, n) for tag, count in batches for n in range(count)]
    return all(
        heads[c] == len(expected) and all(row == expected[s - 1] for s, row in rows[c].items())
        for c in rows
    )


# -- processes -------------------------------------------------------------------


def fault_env(db: str, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    """Environment of the servers and publishers of a scenario."""
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "SSE_TEST_DB": db,
        "SSE_KEEPALIVE": "1",
        "SSE_HISTORY_POLL": "0.5",
        "SSE_RETRY_MS": "300",
        "SSE_PUBLISH_TIMEOUT": "0.5",
        # Publishers prune only when a scenario asks for it.
        "SSE_HISTORY_PRUNE_INTERVAL": "0",
    }
    if redis_url:
        env.update(SSE_TEST_LAYER="redis", REDIS_URL=redis_url)
    else:
        env["SSE_TEST_LAYER"] = "memory"
    env.update(extra)
    return env


@dataclass
class Published:
    status: int
    seconds: float
    summary: dict[str, Any]
    output: str


async def publish(
    env: dict[str, str],
    channels: list[str],
    count: int,
    tag: str,
    *,
    pad: int = 0,
    pause: float = 0.0,
    timeout: float = 90.0,
) -> Published:
    """Run ``tests.faults.publisher`` in a process of its own; a publisher still
    running after ``timeout`` seconds is killed and reported with status -9."""
    args = [",".join(channels), str(count), tag, str(pad), str(pause)]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults.publisher",
        *args,
        cwd=ROOT,
        env=base_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        output, _ = await proc.communicate()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    text = output.decode(errors="replace")
    summary: dict[str, Any] = {}
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            summary = json.loads(line)
            break
    assert proc.returncode is not None
    return Published(proc.returncode, time.monotonic() - started, summary, text)


class LoadClient:
    """The load-client process (``tests.faults.loadclient``) and its commands."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def _answer(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"the load client exited with {await self.proc.wait()}")
        return dict(json.loads(line))

    async def command(self, cmd: str, wait: float = 30.0, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        return await self._answer(wait)

    async def wait_status(
        self, done: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        """Poll the load client's status until ``done(status)``."""
        deadline = time.monotonic() + timeout
        while True:
            status = await self.command("status")
            if done(status):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"load client status still {status}")
            await asyncio.sleep(0.1)

    async def finish(self, heads: dict[str, int], timeout: float) -> list[dict[str, Any]]:
        answer = await self.command("finish", wait=timeout + 60, heads=heads, timeout=timeout)
        return list(answer["records"])


@asynccontextmanager
async def load_client(
    port: int, clients: list[list[str]], *, open_timeout: float = 60.0, **config: Any
) -> AsyncIterator[tuple[LoadClient, dict[str, Any]]]:
    """Start the load client on ``clients`` (their channels); yield it and its ready line."""
    settings = {"port": port, "clients": clients, "open_timeout": open_timeout, **config}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults.loadclient",
        json.dumps(settings),
        cwd=ROOT,
        env=base_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None,
        limit=256 * 1024 * 1024,  # the final records are one long line
    )
    client = LoadClient(proc)
    try:
        ready = await client._answer(open_timeout + 30)
        yield client, ready
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def published(env: dict[str, str], channels: list[str], count: int, tag: str) -> None:
    """:func:`publish`, which must succeed."""
    run = await publish(env, channels, count, tag)
    assert run.status == 0, run.output[-2000:]


async def kill9_and_restart(
    server: Server, env: dict[str, str], channels: list[str], batches: list[tuple[str, int]]
) -> float:
    """Publish ``batches`` (before, down, after): the first while ``server``
    runs, the second after ``kill -9``, the third once it has started again.
    Returns ``time.monotonic()`` at the restart."""
    (before, n_before), (down, n_down), (after, n_after) = batches
    await published(env, channels, n_before, before)
    kill9(server)
    await published(env, channels, n_down, down)
    start_again(server)
    restarted = time.monotonic()
    await published(env, channels, n_after, after)
    return restarted


def kill9(server: Server) -> None:
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)


def start_again(server: Server) -> None:
    """Start ``server`` again on its port, after it died."""
    server.proc = spawn_server(server.kind, server.port, server.env, server.log)


def graceful_command(port: int, grace: float) -> list[str]:
    """uvicorn with the lifespan protocol on (``auto``: a failing app still
    starts) and a bounded graceful shutdown, as a deployment runs it."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--lifespan",
        "auto",
        # Explicit, as tests/servers.py's: with uvicorn[standard] installed,
        # uvicorn would pick httptools and uvloop on its own.
        "--http",
        "h11",
        "--loop",
        "asyncio",
        "--timeout-graceful-shutdown",
        f"{grace:g}",
        "tests.asgi:application",
    ]


@contextmanager
def running_graceful_uvicorn(grace: float, **env: str) -> Iterator[Server]:
    port = free_port()
    full_env = base_env(**env)
    with tempfile.NamedTemporaryFile(prefix="uvicorn-", suffix=".log", delete=False) as f:
        log = Path(f.name)
    server = Server(
        "uvicorn", port, spawn(graceful_command(port, grace), port, full_env, log), full_env, log
    )
    try:
        yield server
    finally:
        stop(server.proc)
        log.unlink(missing_ok=True)


def spawn(command: list[str], port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, 30.0)
    except Exception:
        stop(proc)
        raise RuntimeError(f"server did not start:\n{log.read_text(errors='replace')}") from None
    return proc


def rss_kb(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def channel_sets(channels: list[str], clients: int) -> list[list[str]]:
    """Client ``i`` reads channel ``i mod k``; every other one a second channel too,
    so single- and multi-channel positions are both exercised."""
    k = len(channels)
    out = []
    for i in range(clients):
        mine = [channels[i % k]]
        if i % 2 and k > 1:
            mine.append(channels[(i + 1) % k])
        out.append(mine)
    return out
