"""``multi-process``: 1, 2 and 4 uvicorn processes behind nginx sharing one Redis.

Each size starts P fresh processes (``tests.asgi``, Redis layer, one migrated
SQLite file) and nginx from the deployment's template
(``example_project/deploy/scale_out.py``'s ``render()``), with
``worker_connections`` raised for the streams (each holds two connections in
nginx). The load client (this process, on the second core) opens the streams
through nginx, which spreads them round robin; every stream is on one
channel. Then ``rounds`` events are published from this process with
``asend_event`` over the same Redis layer, each stamped with ``time.time()``
and awaited at every stream. Redis CPU per event is ``used_cpu_sys +
used_cpu_user`` from ``INFO cpu`` over a burst of 2,000 events published back
to back on a second channel with one stream per process (every process
subscribed; a few fan-out rounds are too little work to see past Redis's idle
timers); server CPU is the sum over the P processes (``/proc``).

Servers, nginx and Redis are not pinned: with P processes on a 2-core machine
they share both cores with the load client.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from benchmarks.harness import measure
from benchmarks.harness.client import (
    BurstSink,
    FanoutSink,
    close_clients,
    http_request,
    open_clients,
)
from benchmarks.harness.fanout import BURST_LIMIT, SETTLE_LIMIT, Publisher, play_rounds
from benchmarks.harness.report import log, table
from benchmarks.harness.setup import migrate, redis_url

#: nginx holds two connections per stream (client and upstream), plus slack.
NGINX_CONNECTIONS = 65536
#: Events of the burst that measures Redis CPU per event.
REDIS_BURST = 2000


@contextmanager
def nginx(ports: list[int]) -> Iterator[int]:
    """nginx from the deployment template in front of ``ports``; yields its port."""
    from tests.servers import (
        START_TIMEOUT,
        free_port,
        nginx_binary,
        render_nginx_conf,
        stop,
        wait_for_port,
    )

    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="nginx-bench-") as tmp:
        prefix = Path(tmp)
        conf = render_nginx_conf(prefix, f"127.0.0.1:{port}", ports)
        # The template's 8,192 connections serve a few thousand streams.
        conf = conf.replace(
            "worker_connections 8192;", f"worker_connections {NGINX_CONNECTIONS};"
        ).replace(
            "worker_processes 1;",
            f"worker_processes 1;\nworker_rlimit_nofile {NGINX_CONNECTIONS * 2};",
        )
        (prefix / "nginx.conf").write_text(conf)
        with (prefix / "stdout.log").open("wb") as out:
            proc = subprocess.Popen(
                [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(port, proc, START_TIMEOUT)
            yield port
        finally:
            stop(proc)


async def streams_of(ports: list[int]) -> list[int]:
    out = []
    for port in ports:
        stats = json.loads(await http_request(port, "GET", "/test/stats/"))
        out.append(int(stats.get("streams", 0)))
    return out


async def wait_total(ports: list[int], wanted: int, limit: float) -> list[int]:
    counts = await streams_of(ports)
    for _ in range(int(limit / 0.2)):
        if sum(counts) == wanted:
            break
        await asyncio.sleep(0.2)
        counts = await streams_of(ports)
    return counts


async def redis_per_event(
    port: int, ports: list[int], url: str, publisher: Publisher, concurrency: int
) -> dict[str, Any]:
    """Redis CPU per event with every process subscribed: one stream per process
    on a channel of its own (the next P connections through nginx's round
    robin), ``REDIS_BURST`` events published back to back and awaited at each.
    The burst's work dwarfs Redis's idle timers, which a few fan-out rounds
    do not."""
    channel = f"news:redis-{uuid.uuid4().hex[:8]}"
    sink = BurstSink(REDIS_BURST)
    before = await streams_of(ports)
    opened = await open_clients(port, channel, len(ports), sink, 1)
    sink.clients = opened.clients
    try:
        after = await wait_total(ports, sum(before) + len(opened.clients), SETTLE_LIMIT)
        subscribed = sum(1 for a, b in zip(after, before, strict=True) if a > b)
        cpu0, t0 = measure.redis_cpu(url), time.monotonic()
        await publisher.burst(channel, REDIS_BURST)
        await asyncio.wait_for(sink.done.wait(), BURST_LIMIT)
        seconds = time.monotonic() - t0
        cpu = measure.redis_cpu(url) - cpu0
    finally:
        close_clients(opened.created)
    return {
        "subscribed_processes": subscribed,
        "events": REDIS_BURST,
        "seconds": seconds,
        "cpu_ms_per_event": cpu / REDIS_BURST * 1000,
        "complete": sum(1 for c in opened.clients if len(c.received) == REDIS_BURST),
    }


async def one(
    processes: int, streams: int, rounds: int, env: dict[str, str], url: str, concurrency: int
) -> dict[str, Any]:
    from tests.servers import running_server

    with ExitStack() as stack:
        servers = [stack.enter_context(running_server("uvicorn", **env)) for _ in range(processes)]
        ports = [s.port for s in servers]
        pids = [s.proc.pid for s in servers]
        port = stack.enter_context(nginx(ports))
        publisher = Publisher("redis")
        channel = f"news:scale-{uuid.uuid4().hex[:8]}"
        sink = FanoutSink()
        opened = await open_clients(port, channel, streams, sink, concurrency)
        try:
            per_process = await wait_total(ports, len(opened.clients), SETTLE_LIMIT)
            rss = [measure.proc_status(p)["VmRSS"] for p in pids]
            cpu0 = sum(measure.proc_cpu(p) for p in pids)
            latencies, per_round = await play_rounds(
                publisher, sink, opened.clients, channel, rounds
            )
            server_cpu = sum(measure.proc_cpu(p) for p in pids) - cpu0
            redis = await redis_per_event(port, ports, url, publisher, concurrency)
        finally:
            close_clients(opened.created)
        problems = [line for s in servers for line in measure.log_problems(s.output())]
    expected = sum(r["expected"] for r in per_round)
    return {
        "processes": processes,
        "streams": streams,
        "connected": len(opened.clients),
        "connect_errors": len(opened.errors),
        "connect_s": opened.seconds,
        "per_process": per_process,
        "rounds": rounds,
        "expected": expected,
        "delivered": len(latencies),
        "p50_ms": measure.percentile(latencies, 50) * 1000,
        "p95_ms": measure.percentile(latencies, 95) * 1000,
        "p99_ms": measure.percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else math.nan,
        "client_busy_max": max((r["client_busy"] for r in per_round), default=math.nan),
        "redis": redis,
        "server_us_per_delivery": server_cpu / len(latencies) * 1e6 if latencies else math.nan,
        "rss_mb_per_process": [x / 1024 for x in rss],
        "server_log_problems": problems[:5],
    }


async def run(
    sizes: list[int], streams: int, rounds: int, concurrency: int
) -> list[dict[str, Any]]:
    import django

    results: list[dict[str, Any]] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="sse-scale-") as tmp:
        url = redis_url(stack)
        env = {"SSE_TEST_LAYER": "redis", "REDIS_URL": url, "SSE_TEST_DB": f"{tmp}/db.sqlite3"}
        migrate(env)
        # The publisher (this process) uses the servers' settings and Redis layer.
        os.environ.update(env, DJANGO_SETTINGS_MODULE="tests.settings")
        django.setup()
        for processes in sizes:
            log(f"multi-process: {processes} process(es), {streams} streams, {rounds} rounds ...")
            try:
                r = await one(processes, streams, rounds, env, url, concurrency)
            except Exception as exc:
                log(f"  failed: {exc!r}")
                results.append({"processes": processes, "error": repr(exc)[:300]})
                continue
            results.append(r)
            log(
                f"  {r['delivered']}/{r['expected']}, p99 {r['p99_ms']:.0f} ms, Redis "
                f"{r['redis']['cpu_ms_per_event'] * 1000:.1f} µs CPU per event"
            )
    return results


def markdown(results: list[dict[str, Any]], streams: int, rounds: int) -> list[str]:
    header = ["uvicorn processes", "streams (per process)", "delivered", "p50 ms", "p95 ms",
              "p99 ms", "max ms", "Redis CPU µs per event (subscribed processes)",
              "server CPU µs per delivery",
              "RSS MB per process", "load client busy max"]  # fmt: skip
    rows: list[list[Any]] = []
    notes: list[str] = []
    for r in results:
        if "error" in r:
            notes.append(f"- {r['processes']} process(es): {r['error']}")
            continue
        rows.append(
            [
                r["processes"],
                f"{r['connected']} ({'/'.join(str(n) for n in r['per_process'])})",
                f"{r['delivered']}/{r['expected']}",
                r["p50_ms"], r["p95_ms"], r["p99_ms"], r["max_ms"],
                f"{r['redis']['cpu_ms_per_event'] * 1000:.1f} "
                f"({r['redis']['subscribed_processes']})",
                r["server_us_per_delivery"],
                "/".join(f"{x:.0f}" for x in r["rss_mb_per_process"]),
                f"{r['client_busy_max'] * 100:.0f}%",
            ]
        )  # fmt: skip
        if r["connect_errors"]:
            notes.append(f"- {r['processes']} process(es): {r['connect_errors']} streams failed")
        if r["server_log_problems"]:
            notes.append(f"- {r['processes']} process(es): log: {r['server_log_problems'][:2]}")
    intro = [
        f"{streams} streams in total on one channel through nginx (round robin), "
        f"{rounds} events published with `asend_event` from another process over the "
        "same Redis pub/sub layer. Redis CPU per event: `INFO cpu` over a burst of "
        f"{REDIS_BURST} events back to back on a channel with one stream per process.",
        "",
    ]
    return intro + table(header, rows) + (["", *notes] if notes else [])
