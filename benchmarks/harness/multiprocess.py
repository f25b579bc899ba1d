"""``multi-process``: P server processes behind nginx sharing one Redis, with
more streams in total than one process may hold descriptors for.

Each size starts P fresh processes (``tests.asgi``, ``--server``'s first kind,
Redis layer, one migrated SQLite file) and nginx from the deployment's
template (``example_project/deploy/scale_out.py``'s ``render()``). Every
process here is held under the hard open-file limit (20,000 in the container
this was written in), one descriptor per stream end:

* each server process holds ``streams / P`` (a size where that does not fit
  is skipped, with the reason in the table);
* nginx holds two per stream (client and upstream), so it runs
  ``max(P, enough)`` worker processes with ``worker_rlimit_nofile`` at the
  limit, and ``listen ... reuseport`` so the kernel spreads the connections
  evenly over the workers;
* the load client is several processes (:mod:`benchmarks.harness.fanout_client`,
  ``--mp-clients``, by default as few as fit and at least two), each opening
  its share of the streams through nginx and reporting every latency back
  to this process, the orchestrator.

nginx spreads the streams round robin over the P servers; every stream is on
one channel. Then ``rounds`` events are published from this process with
``asend_event`` over the same Redis layer, each stamped with ``time.time()``
and awaited at every stream in every client process. Server CPU per delivery
is the sum over the P processes (``/proc``) over the rounds, nginx's (its
workers) likewise. Redis CPU per event is ``used_cpu_sys + used_cpu_user``
from ``INFO cpu`` over a burst of 2,000 events published back to back on a
second channel with one stream per process (every process subscribed; a few
fan-out rounds are too little work to see past Redis's idle timers).

Nothing is pinned: this scenario undoes the harness's pinning for itself
and everything it starts, so servers, nginx, Redis and the load clients
share both cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from benchmarks.harness import measure
from benchmarks.harness.client import (
    CONNECT_LIMIT_BASE,
    CONNECT_LIMIT_PER_CLIENT,
    BurstSink,
    Opened,
    close_clients,
    http_request,
    open_clients,
)
from benchmarks.harness.fanout import (
    BURST_LIMIT,
    ROUND_LIMIT,
    ROUND_PAUSE,
    SETTLE_LIMIT,
    Publisher,
)
from benchmarks.harness.report import ROOT, log, table
from benchmarks.harness.setup import migrate, redis_url

#: Events of the burst that measures Redis CPU per event.
REDIS_BURST = 2000
#: Bounds, in seconds, beyond a client process's own connect bound.
CLIENT_REPLY_LIMIT = 60.0


def nginx_workers(processes: int, streams: int, limit: int) -> int:
    """Workers enough that each holds its two descriptors per stream under
    ``limit`` with half again to spare (reuseport's hash is even, not exact)."""
    per_worker = max(limit - measure.NOFILE_SLACK, 1)
    return max(processes, math.ceil(2 * streams * 1.5 / per_worker))


@contextmanager
def nginx(ports: list[int], workers: int, limit: int) -> Iterator[tuple[int, int]]:
    """nginx from the deployment template in front of ``ports``, ``workers``
    worker processes; yields its port and its master's pid."""
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
        conf = render_nginx_conf(
            prefix,
            f"127.0.0.1:{port} reuseport",
            ports,
            workers=workers,
            worker_connections=limit - measure.NOFILE_SLACK,
            rlimit_nofile=limit,
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
            yield port, proc.pid
        finally:
            stop(proc)
            errors = prefix / "error.log"
            if errors.exists() and errors.stat().st_size:
                log(f"nginx error.log (tail): {errors.read_text(errors='replace')[-1500:]}")


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def tree_cpu(pid: int) -> float:
    """CPU of ``pid`` and its children (nginx's master and workers)."""
    total = 0.0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            total += measure.proc_cpu(p)
    return total


class ClientProcess:
    """One :mod:`benchmarks.harness.fanout_client` process, driven over its pipes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, config: dict[str, Any]) -> ClientProcess:
        from tests.servers import base_env

        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.harness.fanout_client",
            json.dumps(config),
            cwd=ROOT,
            env=base_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        return cls(proc)

    async def line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            raise RuntimeError(f"load client {self.proc.pid} exited with {await self.proc.wait()}")
        return dict(json.loads(raw))

    async def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


async def rounds_over(
    clients: list[ClientProcess], publisher: Publisher, channel: str, rounds: int
) -> tuple[list[float], list[dict[str, Any]]]:
    """``rounds`` stamped events, each awaited at every stream of every client
    process: every latency, and a summary per round."""
    latencies: list[float] = []
    per_round: list[dict[str, Any]] = []
    for number in range(rounds):
        expected = 0
        for c in clients:
            await c.send({"cmd": "start", "round": number})
        for c in clients:
            expected += int((await c.line(CLIENT_REPLY_LIMIT))["expected"])
        started_at = time.time()
        await publisher.fanout(channel, number)
        got: list[float] = []
        busy: list[float] = []
        for c in clients:
            reply = await c.line(ROUND_LIMIT + CLIENT_REPLY_LIMIT)
            got.extend(reply["latencies"])
            busy.append(float(reply["busy"]))
        latencies.extend(got)
        per_round.append(
            {
                "round": number,
                "started_at": started_at,
                "expected": expected,
                "delivered": len(got),
                "p50_ms": measure.percentile(got, 50) * 1000,
                "p99_ms": measure.percentile(got, 99) * 1000,
                "client_busy": max(busy, default=math.nan),
            }
        )
        await asyncio.sleep(ROUND_PAUSE)
    return latencies, per_round


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


async def redis_per_event(ports: list[int], url: str, publisher: Publisher) -> dict[str, Any]:
    """Redis CPU per event with every process subscribed: one stream per process
    on a channel of its own (straight to each process's port: with several
    nginx workers, each with its own round robin, P streams through nginx need
    not reach P processes), ``REDIS_BURST`` events published back to back and
    awaited at each. The burst's work dwarfs Redis's idle timers, which a few
    fan-out rounds do not."""
    channel = f"news:redis-{uuid.uuid4().hex[:8]}"
    sink = BurstSink(REDIS_BURST)
    before = await streams_of(ports)
    opened = Opened([], [], [], 0.0)
    for port in ports:
        one = await open_clients(port, channel, 1, sink, 1)
        opened.clients += one.clients
        opened.created += one.created
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


def client_count(streams: int, limit: int, wanted: int = 0) -> int:
    """Load-client processes: ``wanted``, or as few as hold their share of
    the streams under ``limit`` and at least two (one core each)."""
    if wanted > 0:
        return wanted
    return max(2, math.ceil(streams / max(limit - measure.NOFILE_SLACK, 1)))


def too_many(processes: int, streams: int, clients: int, limit: int) -> str:
    """Why a size cannot run under the open-file ``limit``, or ``""``."""
    room = limit - measure.NOFILE_SLACK
    if math.ceil(streams / processes) > room:
        return (
            f"{math.ceil(streams / processes)} streams per server process need more than "
            f"the open-file limit ({limit}) allows"
        )
    if math.ceil(streams / clients) > room:
        return f"{math.ceil(streams / clients)} streams per load-client process exceed the limit"
    return ""


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def one(
    processes: int,
    streams: int,
    rounds: int,
    env: dict[str, str],
    url: str,
    *,
    concurrency: int,
    kind: str,
    clients: int,
    limit: int,
) -> dict[str, Any]:
    from tests.servers import running_server

    workers = nginx_workers(processes, streams, limit)
    channel = f"news:scale-{uuid.uuid4().hex[:8]}"
    loads: list[ClientProcess] = []
    with ExitStack() as stack:
        servers = [stack.enter_context(running_server(kind, **env)) for _ in range(processes)]
        ports = [s.port for s in servers]
        pids = [s.proc.pid for s in servers]
        port, nginx_pid = stack.enter_context(nginx(ports, workers, limit))
        publisher = Publisher("redis")
        shares = split(streams, clients)
        try:
            for count in shares:
                config = {"port": port, "channel": channel, "count": count}
                loads.append(await ClientProcess.start({**config, "concurrency": concurrency}))
            open_limit = CONNECT_LIMIT_BASE + CONNECT_LIMIT_PER_CLIENT * max(shares)
            ready = [await c.line(open_limit + CLIENT_REPLY_LIMIT) for c in loads]
            connected = sum(int(r["ready"]) for r in ready)
            errors = [r["first_error"] for r in ready if r["first_error"]]
            per_process = await wait_total(ports, connected, SETTLE_LIMIT)
            rss = [measure.proc_status(p)["VmRSS"] for p in pids]
            # Each worker must stay under the limit: reuseport's spread, seen.
            nginx_fds = sorted(open_fds(w) for w in children(nginx_pid))
            cpu0 = sum(measure.proc_cpu(p) for p in pids)
            nginx_cpu0 = tree_cpu(nginx_pid)
            latencies, per_round = await rounds_over(loads, publisher, channel, rounds)
            server_cpu = sum(measure.proc_cpu(p) for p in pids) - cpu0
            nginx_cpu = tree_cpu(nginx_pid) - nginx_cpu0
            redis = await redis_per_event(ports, url, publisher)
            closed: list[dict[str, Any]] = []
            for c in loads:
                await c.send({"cmd": "close"})
            for c in loads:
                closed.append(await c.line(CLIENT_REPLY_LIMIT))
                await asyncio.wait_for(c.proc.wait(), CLIENT_REPLY_LIMIT)
        finally:
            for c in loads:
                c.kill()
        problems = [line for s in servers for line in measure.log_problems(s.output())]
    expected = sum(r["expected"] for r in per_round)
    delivered = len(latencies)
    return {
        "processes": processes,
        "server": kind,
        "streams": streams,
        "nginx_workers": workers,
        "nginx_fds_per_worker": nginx_fds,
        "client_processes": clients,
        "connected": connected,
        "connect_errors": sum(int(r["errors"]) for r in ready),
        "first_connect_error": errors[0] if errors else None,
        "connect_s": max(float(r["seconds"]) for r in ready),
        "per_process": per_process,
        "rounds": rounds,
        "expected": expected,
        "delivered": delivered,
        "dropped": sum(int(c["dropped"]) for c in closed),
        "closed_by_server": sum(int(c["closed_by_server"]) for c in closed),
        "p50_ms": measure.percentile(latencies, 50) * 1000,
        "p95_ms": measure.percentile(latencies, 95) * 1000,
        "p99_ms": measure.percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else math.nan,
        "per_round": per_round,
        "client_busy_max": max((r["client_busy"] for r in per_round), default=math.nan),
        "redis": redis,
        "server_us_per_delivery": server_cpu / delivered * 1e6 if delivered else math.nan,
        "nginx_us_per_delivery": nginx_cpu / delivered * 1e6 if delivered else math.nan,
        "rss_mb_per_process": [x / 1024 for x in rss],
        "server_log_problems": problems[:5],
    }


async def run(
    sizes: list[int],
    streams: int,
    rounds: int,
    concurrency: int,
    *,
    kind: str = "uvicorn",
    clients: int = 0,
) -> list[dict[str, Any]]:
    import django

    limit = measure.raise_nofile(0)
    results: list[dict[str, Any]] = []
    pinned = os.sched_getaffinity(0)
    # Servers, nginx, Redis and the load clients inherit this: all cores.
    os.sched_setaffinity(0, set(measure.CPUS))
    try:
        with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="sse-scale-") as tmp:
            url = redis_url(stack)
            env = {
                "SSE_TEST_LAYER": "redis",
                "REDIS_URL": url,
                "SSE_TEST_DB": f"{tmp}/db.sqlite3",
            }
            migrate(env)
            # The publisher (this process) uses the servers' settings and Redis layer.
            os.environ.update(env, DJANGO_SETTINGS_MODULE="tests.settings")
            django.setup()
            for processes in sizes:
                n_clients = client_count(streams, limit, clients)
                why = too_many(processes, streams, n_clients, limit)
                if why:
                    log(f"multi-process: {processes} process(es) skipped: {why}")
                    results.append({"processes": processes, "skipped": why})
                    continue
                log(
                    f"multi-process: {processes} {kind} process(es), {streams} streams from "
                    f"{n_clients} load-client processes, {rounds} rounds ..."
                )
                try:
                    r = await one(
                        processes, streams, rounds, env, url,
                        concurrency=concurrency, kind=kind, clients=n_clients,
                        limit=limit,
                    )  # fmt: skip
                except Exception as exc:
                    log(f"  failed: {exc!r}")
                    results.append({"processes": processes, "error": repr(exc)[:300]})
                    continue
                results.append(r)
                log(
                    f"  {r['delivered']}/{r['expected']}, p50 {r['p50_ms']:.0f} ms, "
                    f"p99 {r['p99_ms']:.0f} ms, server {r['server_us_per_delivery']:.1f} µs "
                    f"per delivery, Redis {r['redis']['cpu_ms_per_event'] * 1000:.1f} µs "
                    "CPU per event"
                )
    finally:
        os.sched_setaffinity(0, pinned)
    return results


def markdown(results: list[dict[str, Any]], streams: int, rounds: int) -> list[str]:
    header = ["server processes", "streams (per process)", "nginx workers / load clients",
              "delivered", "p50 ms", "p95 ms", "p99 ms", "max ms",
              "server CPU µs per delivery", "nginx CPU µs per delivery",
              "Redis CPU µs per event (subscribed processes)",
              "RSS MB per process", "load client busy max"]  # fmt: skip
    rows: list[list[Any]] = []
    notes: list[str] = []
    for r in results:
        if "skipped" in r:
            notes.append(f"- {r['processes']} process(es): not run: {r['skipped']}")
            continue
        if "error" in r:
            notes.append(f"- {r['processes']} process(es): {r['error']}")
            continue
        rows.append(
            [
                f"{r['processes']} {r['server']}",
                f"{r['connected']} ({'/'.join(str(n) for n in r['per_process'])})",
                f"{r['nginx_workers']} / {r['client_processes']}",
                f"{r['delivered']}/{r['expected']}",
                r["p50_ms"], r["p95_ms"], r["p99_ms"], r["max_ms"],
                r["server_us_per_delivery"],
                r["nginx_us_per_delivery"],
                f"{r['redis']['cpu_ms_per_event'] * 1000:.1f} "
                f"({r['redis']['subscribed_processes']})",
                "/".join(f"{x:.0f}" for x in r["rss_mb_per_process"]),
                f"{r['client_busy_max'] * 100:.0f}%",
            ]
        )  # fmt: skip
        if r["connect_errors"]:
            notes.append(
                f"- {r['processes']} process(es): {r['connect_errors']} streams failed to "
                f"open ({r['first_connect_error']})"
            )
        if r["dropped"] or r["closed_by_server"]:
            notes.append(
                f"- {r['processes']} process(es): {r['dropped']} streams dropped, "
                f"{r['closed_by_server']} closed by the server during the rounds"
            )
        if r["server_log_problems"]:
            notes.append(f"- {r['processes']} process(es): log: {r['server_log_problems'][:2]}")
        notes.append(
            f"- {r['processes']} process(es): open descriptors per nginx worker with every "
            f"stream open: {', '.join(str(n) for n in r['nginx_fds_per_worker'])}"
        )
    intro = [
        f"{streams} streams in total on one channel through nginx (round robin over the "
        "processes; several nginx workers and load-client processes, each under the "
        f"open-file limit), {rounds} events published with `asend_event` from another "
        "process over the same Redis pub/sub layer. Server and nginx CPU: summed over "
        "their processes during the rounds, over the deliveries. Redis CPU per event: "
        f"`INFO cpu` over a burst of {REDIS_BURST} events back to back on a channel with one "
        "stream per process. Nothing pinned: everything shares the machine's cores.",
        "",
    ]
    return intro + table(header, rows) + (["", *notes] if notes else [])
