"""History scenarios: what the database store adds to ``send_event``
(``send-event``), and how fast a client resumes from the store (``resume``).

Publish cost: N back-to-back ``send_event("news:bench", "e", {"n": i})`` calls
(and the same with ``await asend_event``) from a plain process with no
subscribers and the in-memory layer, timed one by one. Every configuration
(database x journal mode x API) runs in a process of its own, since settings
are per process: ``tests.settings`` with ``SSE_TEST_DB`` (a fresh, migrated
SQLite file) or ``SSE_TEST_POSTGRES`` (a throwaway ``sse_bench_<random>``
database on 127.0.0.1:5432, dropped at the end), adjusted before
``django.setup()``. The child (``python -m benchmarks.harness.history --worker
SPEC``) prints its results as JSON.

Resume: a real server (SQLite file); a process configured like it computes a
fresh channel's position with ``current_position``, publishes N events with
``send_event`` while no client is connected, then opens ``GET
/sse/?channel=...&lastEventId=<position>`` and times the request until the
N-th event, checking order, gaps and duplicates.

See benchmarks/README.md for how to read the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from benchmarks.harness import measure
from benchmarks.harness.client import HOST, Sink, SSEClient, close_clients
from benchmarks.harness.measure import log_problems, percentile, summary
from benchmarks.harness.report import ROOT, finite, fmt, log
from benchmarks.harness.setup import redis_url, stop_on_sigterm

CHANNEL = "news:bench"
EVENT = "e"
#: Upper bounds, in seconds.
WORKER_LIMIT = 900.0
PG_CONNECT_LIMIT = 5.0
RESUME_LIMIT = 60.0
EXTRA_WAIT = 0.3
#: Calls made (untimed) before the timed ones: imports, connections, caches.
WARMUP = 50
#: Channels a ``send_events`` batch spreads over, and batches timed.
BATCH_CHANNELS = 100
BATCH_ROUNDS = 3
#: Events published on a resume channel before its position is taken, so the
#: position is not simply 0.
BEFORE = 10
SQLITE_MODES: dict[str, str] = {
    # The migrated file is in WAL mode already (tests/settings.py), and WAL persists
    # in the file: the rollback journal has to be asked for.
    "DELETE (default)": "PRAGMA journal_mode=DELETE",
    "WAL": "PRAGMA journal_mode=WAL",
    "WAL, synchronous=NORMAL": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
}


# -- child processes ------------------------------------------------------------


def configure(spec: dict[str, Any]) -> None:
    """Adjust ``tests.settings`` for this process, then ``django.setup()``."""
    import django
    from django.conf import settings

    database = settings.DATABASES["default"]
    if spec.get("init_command"):
        database.setdefault("OPTIONS", {})["init_command"] = spec["init_command"]
    if spec.get("conn_max_age") is not None:
        database["CONN_MAX_AGE"] = spec["conn_max_age"]
    if not spec.get("store", True):
        settings.SSE_STORE = None
    django.setup()


class ConnectionCounter:
    """Counts new database connections (``connection_created``)."""

    def __init__(self) -> None:
        from django.db.backends.signals import connection_created

        self.count = 0
        connection_created.connect(self._created, weak=False)

    def _created(self, **kwargs: Any) -> None:
        self.count += 1


def database_info() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA journal_mode")
            journal = cursor.fetchone()[0]
            cursor.execute("PRAGMA synchronous")
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(cursor.fetchone()[0])
            cursor.execute("SELECT sqlite_version()")
            version = cursor.fetchone()[0]
            return {"vendor": "sqlite", "version": version, "journal": journal, "sync": sync}
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute("SHOW synchronous_commit")
        return {"vendor": connection.vendor, "version": version, "sync": cursor.fetchone()[0]}


def batch_worker(events: int) -> dict[str, Any]:
    """``send_events`` of ``events`` events over :data:`BATCH_CHANNELS` channels,
    each batch one transaction: :data:`BATCH_ROUNDS` timed batches."""
    from django_sse import send_events
    from django_sse.models import StoredEvent

    def items(round_: int, count: int) -> list[tuple[str, str, Any]]:
        return [(f"news:batch-{i % BATCH_CHANNELS}", EVENT, {"n": i, "r": round_})
                for i in range(count)]  # fmt: skip

    send_events(items(-1, BATCH_CHANNELS))  # the channels' sequence rows exist
    seconds = []
    for round_ in range(BATCH_ROUNDS):
        batch = items(round_, events)
        started = time.perf_counter()
        sent = send_events(batch)
        seconds.append(time.perf_counter() - started)
        assert len(sent) == events and all(e.seq is not None for e in sent)
    stored = StoredEvent.objects.filter(channel__startswith="news:batch-").count()
    rates = sorted(events / s for s in seconds)
    return {
        "calls": BATCH_ROUNDS,
        "batch_ms": [s * 1000 for s in seconds],
        "rate_median": rates[len(rates) // 2],
        "rate_best": rates[-1],
        "stored": stored,
        "expected": BATCH_CHANNELS + BATCH_ROUNDS * events,
    }


def publish_worker(spec: dict[str, Any]) -> dict[str, Any]:
    configure(spec)
    from django.db import connection

    from django_sse import asend_event, send_event
    from django_sse.models import ChannelSequence, StoredEvent

    if spec["store"]:
        # A PostgreSQL database is shared by the configurations: start empty.
        StoredEvent.objects.all().delete()
        ChannelSequence.objects.all().delete()
    info = database_info()
    connection.close()
    counter = ConnectionCounter()
    events = int(spec["events"])
    times_ms: list[float] = []
    first_ms = math.nan
    conns_before = 0
    wall = math.nan

    if spec["api"] == "batch":
        return {**spec, "database": info, **batch_worker(int(spec["events"]))}
    if spec["api"] == "sync":
        t0 = time.perf_counter()
        send_event(CHANNEL, EVENT, {"n": -WARMUP})
        first_ms = (time.perf_counter() - t0) * 1000
        for i in range(1 - WARMUP, 0):
            send_event(CHANNEL, EVENT, {"n": i})
        conns_before = counter.count
        started = time.perf_counter()
        for i in range(events):
            t0 = time.perf_counter()
            send_event(CHANNEL, EVENT, {"n": i})
            times_ms.append((time.perf_counter() - t0) * 1000)
        wall = time.perf_counter() - started
    else:

        async def run() -> tuple[float, int, float]:
            t0 = time.perf_counter()
            await asend_event(CHANNEL, EVENT, {"n": -WARMUP})
            first = (time.perf_counter() - t0) * 1000
            for i in range(1 - WARMUP, 0):
                await asend_event(CHANNEL, EVENT, {"n": i})
            before = counter.count
            started = time.perf_counter()
            for i in range(events):
                t0 = time.perf_counter()
                await asend_event(CHANNEL, EVENT, {"n": i})
                times_ms.append((time.perf_counter() - t0) * 1000)
            return first, before, time.perf_counter() - started

        first_ms, conns_before, wall = asyncio.run(run())

    stored = StoredEvent.objects.filter(channel=CHANNEL).count() if spec["store"] else 0
    head = ChannelSequence.objects.filter(channel=CHANNEL).values_list("last_seq", flat=True)
    return {
        **spec,
        "database": info,
        "calls": len(times_ms),
        "first_ms": first_ms,
        "wall_s": wall,
        "connections": counter.count - conns_before,
        "stored": stored,
        "last_seq": head.first() or 0,
        **{f"{k}_ms": v for k, v in summary(times_ms).items()},
    }


# -- resume (child) ---------------------------------------------------------------


class IdClient(SSEClient):
    """The fan-out client, keeping the ``id:`` of the event being dispatched."""

    last_id = ""

    def _dispatch(self, block: bytes, now: float) -> None:
        for line in block.split(b"\n"):
            if line.startswith(b"id:"):
                self.last_id = line[3:].strip().decode()
        super()._dispatch(block, now)


class ResumeSink(Sink):
    def __init__(self, events: int) -> None:
        self.events = events
        self.numbers: list[int] = []
        self.ids: list[str] = []
        self.unexpected: list[str] = []
        self.extra = 0
        self.first_at = math.nan
        self.done_at = math.nan
        self.done = asyncio.Event()

    def on_event(self, client: SSEClient, name: str, data: str, now: float) -> None:
        if name != EVENT:
            # "old" (published before the position), stream-reset, stream-closed.
            self.unexpected.append(f"{name}: {data[:100]}")
            if name.startswith("stream-"):
                self.done.set()
            return
        if len(self.numbers) >= self.events:
            self.extra += 1
            return
        if not self.numbers:
            self.first_at = now
        assert isinstance(client, IdClient)
        self.numbers.append(json.loads(data)["n"])
        self.ids.append(client.last_id)
        if len(self.numbers) == self.events:
            self.done_at = now
            self.done.set()

    def on_lost(self, client: SSEClient) -> None:
        self.done.set()


def seq_of(event_id: str) -> int:
    """The sequence number in a one-channel stream id (``<key>-<base 36>``)."""
    return int(event_id.rsplit("-", 1)[1], 36)


async def resume_once(port: int, channel: str, position: str, events: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    request = (
        f"GET /sse/?channel={channel}&lastEventId={position} HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()
    sink = ResumeSink(events)
    started = time.time()
    _, client = await asyncio.wait_for(
        loop.create_connection(lambda: IdClient(request, sink), HOST, port), RESUME_LIMIT
    )
    try:
        await asyncio.wait_for(client.ready, RESUME_LIMIT)
        head_at = time.time()
        try:
            await asyncio.wait_for(sink.done.wait(), RESUME_LIMIT)
        except TimeoutError:
            pass
        if not math.isnan(sink.done_at):
            await asyncio.sleep(EXTRA_WAIT)  # duplicates would arrive now
    finally:
        close_clients([client])
    start_seq = seq_of(position)
    seqs = [seq_of(i) for i in sink.ids]
    return {
        "received": len(sink.numbers),
        "in_order": sink.numbers == list(range(events))
        and seqs == list(range(start_seq + 1, start_seq + events + 1)),
        "unique": len(set(seqs)) == len(seqs) and sink.extra == 0,
        "extra": sink.extra,
        "unexpected": sink.unexpected[:5],
        "first_chunk_ms": (head_at - started) * 1000,
        "first_event_ms": (sink.first_at - started) * 1000,
        "total_ms": (sink.done_at - started) * 1000,
    }


def resume_round(port: int, events: int) -> dict[str, Any]:
    from django_sse import current_position, send_event

    channel = f"news:resume-{uuid.uuid4().hex[:10]}"
    for i in range(BEFORE):
        send_event(channel, "old", {"n": i})
    position = current_position([channel])
    started = time.perf_counter()
    for i in range(events):
        send_event(channel, EVENT, {"n": i})
    publish_s = time.perf_counter() - started
    result = asyncio.run(resume_once(port, channel, position, events))
    return {"channel": channel, "position": position, "publish_s": publish_s, **result}


def resume_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from tests.servers import running_server

    configure(spec)
    env = {
        k: os.environ[k] for k in ("SSE_TEST_DB", "SSE_TEST_LAYER", "REDIS_URL") if k in os.environ
    }
    with running_server(spec["server"], **env) as server:
        measure.pin_server(server.proc.pid)
        measure.pin_client()
        try:
            log(f"  resume ({spec['layer']} layer): warm-up")
            warmup = resume_round(server.port, 20)
            rounds = []
            for number in range(int(spec["rounds"])):
                rounds.append(resume_round(server.port, int(spec["events"])))
                r = rounds[-1]
                log(
                    f"  round {number}: {r['received']} events in {r['total_ms']:.0f} ms, "
                    f"in order {r['in_order']}, unique {r['unique']}"
                )
        except BaseException:
            log(f"--- {spec['server']} log (tail) ---\n{server.output()[-3000:]}")
            raise
        problems = log_problems(server.output())
    return {**spec, "warmup": warmup, "rounds": rounds, "server_log_problems": problems}


def worker_main(raw: str) -> int:
    spec = json.loads(raw)
    stop_on_sigterm()
    result = resume_worker(spec) if spec["kind"] == "resume" else publish_worker(spec)
    print("RESULT " + json.dumps(finite(result)), flush=True)
    return 0


# -- parent ---------------------------------------------------------------------


def run_worker(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    from tests.servers import base_env

    full = base_env(**env)
    for key in ("SSE_TEST_DB", "SSE_TEST_POSTGRES", "SSE_TEST_POSTGRES_DB"):
        if key not in env:
            full.pop(key, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.harness.history", "--worker", json.dumps(spec)],
        cwd=ROOT,
        env=full,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=WORKER_LIMIT)
    except BaseException:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        raise
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {spec} failed with exit code {proc.returncode}:\n{out[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


@contextmanager
def postgres_database(skip: bool) -> Iterator[tuple[str | None, str]]:
    """A fresh, migrated database ``sse_bench_<random>``, or ``None`` and why not."""
    if skip:
        yield None, "--no-postgres"
        return
    try:
        import psycopg
    except ImportError as exc:
        yield None, f"psycopg is not installed ({exc})"
        return
    params: dict[str, Any] = {
        "host": HOST,
        "port": 5432,
        "user": "postgres",
        "dbname": "postgres",
        "autocommit": True,
        "connect_timeout": PG_CONNECT_LIMIT,
    }
    name = f"sse_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(**params) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        yield None, f"PostgreSQL at {HOST}:5432 unreachable: {str(exc).strip()[:200]}"
        return
    try:
        from tests.servers import base_env

        env = base_env(SSE_TEST_POSTGRES="1", SSE_TEST_POSTGRES_DB=name)
        env.pop("SSE_TEST_DB", None)
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=WORKER_LIMIT,
        )
        yield name, ""
    finally:
        with psycopg.connect(**params) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def publish_configs(events: int, batch: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """(database key, spec) of every publish-cost configuration, in table order."""
    out: list[tuple[str, dict[str, Any]]] = []

    def add(db: str, journal: str, api: str, **extra: Any) -> None:
        spec = {"kind": "publish", "api": api, "events": events, "store": True, "journal": journal}
        spec.update(extra)
        if db == "sqlite":
            spec["init_command"] = SQLITE_MODES[journal]
        out.append((db, spec))

    for journal in SQLITE_MODES:
        add("sqlite", journal, "sync")
        add("sqlite", journal, "async")
    # Persistent connections: asend_event's store call closes an expired one first.
    add("sqlite", "DELETE (default)", "async", conn_max_age=60)
    add("sqlite", "WAL, synchronous=NORMAL", "async", conn_max_age=60)
    add("postgres", "-", "sync")
    add("postgres", "-", "async")
    add("postgres", "-", "async", conn_max_age=60)
    add("none", "-", "sync", store=False)
    add("none", "-", "async", store=False)
    if batch:
        add("sqlite", "WAL, synchronous=NORMAL", "batch", events=batch)
        add("postgres", "-", "batch", events=batch)
    return out


def run_publish(
    args: argparse.Namespace, tmp: Path, pg: str | None, pg_reason: str
) -> list[dict[str, Any]]:
    from tests.servers import migrate

    template = tmp / "template.sqlite3"
    migrate(str(template))
    results: list[dict[str, Any]] = []
    configs = publish_configs(args.events, getattr(args, "batch_events", 0))
    for index, (db, spec) in enumerate(configs):
        if db == "postgres" and pg is None:
            continue
        label = f"{db} {spec['journal']} {spec['api']} conn_max_age={spec.get('conn_max_age')}"
        log(f"publish cost: {label} ...")
        if db == "postgres":
            env = {"SSE_TEST_POSTGRES": "1", "SSE_TEST_POSTGRES_DB": str(pg)}
        else:
            path = tmp / f"publish-{index}.sqlite3"
            shutil.copyfile(template, path)
            env = {"SSE_TEST_DB": str(path)}
        env["SSE_TEST_LAYER"] = "memory"
        result = run_worker(spec, env)
        result["db"] = db
        results.append(result)
        if spec["api"] == "batch":
            log(f"  {result['rate_median']:,.0f} events/s (median of {BATCH_ROUNDS} batches)")
        else:
            log(f"  p50 {result['p50_ms']:.3f} ms, mean {result['mean_ms']:.3f} ms")
    if pg is None:
        results.append({"db": "postgres", "skipped": pg_reason})
    return results


def run_resume(args: argparse.Namespace, tmp: Path, stack: ExitStack) -> list[dict[str, Any]]:
    from tests.servers import migrate

    results: list[dict[str, Any]] = []
    for layer in args.resume_layers:
        log(f"resume: {args.resume_events} events, {args.rounds} rounds, {layer} layer ...")
        db = tmp / f"resume-{layer}.sqlite3"
        migrate(str(db))
        env = {"SSE_TEST_DB": str(db), "SSE_TEST_LAYER": layer}
        if layer == "redis":
            env["REDIS_URL"] = redis_url(stack)
        spec = {
            "kind": "resume",
            "server": args.server,
            "layer": layer,
            "events": args.resume_events,
            "rounds": args.rounds,
        }
        if layer == "redis":
            spec["redis"] = "REDIS_URL" if os.environ.get("REDIS_URL") else "private redis-server"
        results.append(run_worker(spec, env))
    return results


# -- report ---------------------------------------------------------------------


def _database_label(r: dict[str, Any]) -> str:
    info = r["database"]
    if r["db"] == "none":
        return "(no store)"
    if info["vendor"] == "sqlite":
        return f"SQLite {info['version']}"
    return f"PostgreSQL {info['version'].split()[0]}"


def _settings_label(r: dict[str, Any]) -> str:
    info = r["database"]
    if r["db"] == "none":
        return "`SSE_STORE = None`"
    if info["vendor"] == "sqlite":
        text = f"journal_mode={info['journal']}, synchronous={info['sync']}"
    else:
        text = f"synchronous_commit={info['sync']}"
    age = r.get("conn_max_age")
    return text + (f", CONN_MAX_AGE={age}" if age is not None else "")


def publish_table(results: list[dict[str, Any]], events: int) -> list[str]:
    out = [
        f"### `send_event` / `asend_event` cost, {events} calls, no subscribers, in-memory layer",
        "",
        "| database | settings | API | p50 ms | p95 ms | p99 ms | mean ms | max ms "
        "| first call ms | calls/s | new DB connections | stored |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.get("skipped") or r["api"] == "batch":
            continue
        api = "`send_event`" if r["api"] == "sync" else "`await asend_event`"
        rate = r["calls"] / r["wall_s"] if r["wall_s"] else math.nan
        stored = f"{r['stored']}/{r['calls'] + WARMUP}" if r["store"] else "-"
        out.append(
            f"| {_database_label(r)} | {_settings_label(r)} | {api} | {fmt(r['p50_ms'], 3)} "
            f"| {fmt(r['p95_ms'], 3)} | {fmt(r['p99_ms'], 3)} | {fmt(r['mean_ms'], 3)} "
            f"| {fmt(r['max_ms'], 2)} | {fmt(r['first_ms'], 1)} | {fmt(rate, 0)} "
            f"| {r['connections']} | {stored} |"
        )
    batches = [r for r in results if not r.get("skipped") and r["api"] == "batch"]
    if batches:
        events = batches[0]["events"]
        out += [
            "",
            f"### `send_events` of {events:,} events over {BATCH_CHANNELS} channels, one "
            f"transaction per batch, in-memory layer ({BATCH_ROUNDS} batches)",
            "",
            "| database | settings | batch ms (each) | events/s (median) | events/s (best) "
            "| goal | stored |",
            "|---|---|---:|---:|---:|---|---:|",
        ]
        for r in batches:
            each = ", ".join(fmt(ms, 0) for ms in r["batch_ms"])
            goal = ">= 20,000 events/s (PostgreSQL)" if r["db"] == "postgres" else "-"
            out.append(
                f"| {_database_label(r)} | {_settings_label(r)} | {each} "
                f"| {fmt(r['rate_median'], 0)} | {fmt(r['rate_best'], 0)} | {goal} "
                f"| {r['stored']}/{r['expected']} |"
            )
    for r in results:
        if r.get("skipped"):
            out.append(f"\nPostgreSQL skipped: {r['skipped']}")
    return out


def resume_table(results: list[dict[str, Any]], events: int) -> list[str]:
    out = [
        f"### Resume: {events} events published while no client was connected, "
        "then `GET /sse/?channel=...&lastEventId=<position>`",
        "",
        "| server | layer | rounds | all received, in order, no gaps, no duplicates "
        "| total ms p50 | total ms min | total ms max | first chunk ms p50 | first event ms p50 "
        "| events/s (p50) | publish s p50 (sync `send_event` x N) |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes: list[str] = []
    for r in results:
        rounds = r["rounds"]
        totals = [x["total_ms"] for x in rounds if x["total_ms"] is not None]
        ok = sum(
            1
            for x in rounds
            if x["received"] == events and x["in_order"] and x["unique"] and not x["unexpected"]
        )
        p50 = percentile(totals, 50) if len(totals) == len(rounds) else math.nan
        out.append(
            f"| {r['server']} | {r['layer']} | {len(rounds)} | {ok}/{len(rounds)} "
            f"| {fmt(p50, 0)} | {fmt(min(totals, default=math.nan), 0)} "
            f"| {fmt(max(totals, default=math.nan), 0)} "
            f"| {fmt(percentile([x['first_chunk_ms'] for x in rounds], 50), 1)} "
            f"| {fmt(percentile([x['first_event_ms'] or math.nan for x in rounds], 50), 1)} "
            f"| {fmt(events / p50 * 1000 if p50 else math.nan, 0)} "
            f"| {fmt(percentile([x['publish_s'] for x in rounds], 50), 2)} |"
        )
        for x in rounds:
            if x["unexpected"] or x["extra"] or x["received"] != events:
                notes.append(
                    f"- {r['layer']}: {x['channel']}: received {x['received']}, extra "
                    f"{x['extra']}, unexpected {x['unexpected']}"
                )
        if r["server_log_problems"]:
            notes.append(f"- {r['layer']}: server log: {r['server_log_problems'][:3]}")
    return out + (["", *notes] if notes else [])


def worker_entry() -> int:
    """``python -m benchmarks.harness.history --worker SPEC``: one child process."""
    return worker_main(sys.argv[sys.argv.index("--worker") + 1])


if __name__ == "__main__":
    raise SystemExit(worker_entry())
