"""Fan-out, burst and idle-memory scenarios: K streams on one channel of a fresh
server, events stamped with the publisher's ``time.time()``.

See benchmarks/README.md for how each figure is measured.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from benchmarks.harness.client import (
    EVENT,
    BurstSink,
    FanoutSink,
    close_clients,
    http_request,
    open_clients,
    wait_streams,
)
from benchmarks.harness.measure import (
    Sampler,
    client_cpu,
    log_problems,
    percentile,
    proc_cpu,
)
from benchmarks.harness.targets import Target, running

ROUND_LIMIT = 15.0
ROUND_PAUSE = 0.3
BURST_LIMIT = 120.0
BURST_STALL = 10.0
SETTLE_LIMIT = 30.0


class Publisher:
    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.port = 0

    async def one(self, channel: str, data: dict[str, Any]) -> None:
        if self.layer == "redis":
            from django_sse import asend_event

            await asend_event(channel, EVENT, data)
        else:
            body = {"channel": channel, "event": EVENT, "count": 1, "data": data}
            await http_request(self.port, "POST", "/test/publish/", json.dumps(body).encode())

    async def fanout(self, channel: str, number: int) -> None:
        await self.one(channel, {"t": time.time(), "round": number})

    async def burst(self, channel: str, count: int) -> None:
        if self.layer == "redis":
            from django_sse import asend_event

            for n in range(count):
                await asend_event(channel, EVENT, {"n": n, "t": time.time()})
        else:
            # The test view publishes {"n": i} for i in range(count), in the server.
            body = {"channel": channel, "event": EVENT, "count": count}
            await http_request(self.port, "POST", "/test/publish/", json.dumps(body).encode())


@dataclass
class Context:
    target: Target
    env: dict[str, str]
    publisher: Publisher
    concurrency: int
    server_kind: str = "uvicorn"

    @property
    def layer(self) -> str:
        return self.env.get("SSE_TEST_LAYER", "memory")


@contextmanager
def server_for(ctx: Context) -> Iterator[Any]:
    with running(ctx.target, ctx.env, ctx.server_kind) as server:
        try:
            yield server
        except BaseException:
            tail = server.output()[-3000:]
            print(f"--- {ctx.target.key} log (tail) ---\n{tail}", file=sys.stderr)
            raise


async def warm_up(ctx: Context, port: int) -> None:
    """Import the views, open the layer connections: nothing here is measured."""
    sink = FanoutSink()
    channel = f"news:warmup-{uuid.uuid4().hex[:8]}"
    opened = await open_clients(port, channel, 3, sink, 3)
    try:
        if opened.errors:
            raise RuntimeError(f"warm-up streams failed: {opened.errors[:3]}")
        await wait_streams(port, len(opened.clients), SETTLE_LIMIT)
        sink.start_round(0, len(opened.clients))
        await ctx.publisher.fanout(channel, 0)
        try:
            await asyncio.wait_for(sink.done.wait(), ROUND_LIMIT)
        except TimeoutError:
            raise RuntimeError("warm-up event was not delivered") from None
    finally:
        close_clients(opened.created)
    await wait_streams(port, 0, SETTLE_LIMIT)


async def play_rounds(
    publisher: Publisher, sink: FanoutSink, clients: list[Any], channel: str, rounds: int
) -> tuple[list[float], list[dict[str, Any]]]:
    """``rounds`` stamped events on ``channel``, each awaited at every open
    client (bounded); every latency, and a summary per round."""
    latencies: list[float] = []
    per_round: list[dict[str, Any]] = []
    for number in range(rounds):
        expected = sum(1 for c in clients if not c.lost)
        sink.start_round(number, expected)
        c0, w0, started_at = client_cpu(), time.perf_counter(), time.time()
        await publisher.fanout(channel, number)
        try:
            await asyncio.wait_for(sink.done.wait(), ROUND_LIMIT)
        except TimeoutError:
            pass
        wall = time.perf_counter() - w0
        busy = (client_cpu() - c0) / wall if wall > 0 else math.nan
        got = list(sink.latencies)
        latencies.extend(got)
        per_round.append(
            {
                "round": number,
                "started_at": started_at,
                "expected": expected,
                "delivered": len(got),
                "p50_ms": percentile(got, 50) * 1000,
                "p95_ms": percentile(got, 95) * 1000,
                "max_ms": max(got) * 1000 if got else math.nan,
                "window_s": wall,
                "client_busy": busy,
            }
        )
        await asyncio.sleep(ROUND_PAUSE)
    return latencies, per_round


async def fanout(ctx: Context, clients: int, rounds: int) -> dict[str, Any]:
    with server_for(ctx) as server:
        port, pid = server.port, server.proc.pid
        ctx.publisher.port = port
        await warm_up(ctx, port)
        sampler = Sampler(pid)
        before = sampler.sample()
        cpu0, server_cpu0 = client_cpu(), proc_cpu(pid)
        sampling = asyncio.create_task(sampler.run(3600))
        channel = f"news:fanout-{clients}-{uuid.uuid4().hex[:8]}"
        sink = FanoutSink()
        opened = await open_clients(port, channel, clients, sink, ctx.concurrency)
        try:
            streams = await wait_streams(port, len(opened.clients), SETTLE_LIMIT)
            await asyncio.sleep(0.2)
            connected = sampler.sample()
            connect_cpu = client_cpu() - cpu0
            rounds_cpu0 = proc_cpu(pid)
            latencies, per_round = await play_rounds(
                ctx.publisher, sink, opened.clients, channel, rounds
            )
            rounds_cpu = proc_cpu(pid) - rounds_cpu0
            peak = sampler.sample()
        finally:
            close_clients(opened.created)
            sampling.cancel()
        left = await wait_streams(port, 0, SETTLE_LIMIT)
        server_cpu = proc_cpu(pid) - server_cpu0
        rss_delta = connected.get("VmRSS", 0) - before.get("VmRSS", 0)
        n_open = len(opened.clients)
        return {
            "scenario": "fanout",
            "target": ctx.target.key,
            "server": ctx.server_kind,
            "layer": ctx.layer,
            "clients": clients,
            "connected": n_open,
            "connect_errors": len(opened.errors),
            "first_connect_error": opened.errors[0] if opened.errors else None,
            "server_streams_seen": streams,
            "server_streams_after_close": left,
            "connect_s": opened.seconds,
            "connect_client_cpu_s": connect_cpu,
            "rounds": rounds,
            "expected": sum(r["expected"] for r in per_round),
            "delivered": len(latencies),
            "stray_events": sink.stray,
            "closed_by_server": sink.closed,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p95_ms": percentile(latencies, 95) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": max(latencies) * 1000 if latencies else math.nan,
            "per_round": per_round,
            "client_cpu_s": client_cpu() - cpu0,
            "client_busy_max": max((r["client_busy"] for r in per_round), default=math.nan),
            "server_cpu_s": server_cpu,
            # The rounds only (publish to last delivery, and the pauses between).
            "rounds_server_cpu_s": rounds_cpu,
            "server_us_per_delivery": rounds_cpu / len(latencies) * 1e6 if latencies else math.nan,
            "server_rss_before_mb": before.get("VmRSS", 0) / 1024,
            "server_rss_connected_mb": connected.get("VmRSS", 0) / 1024,
            "server_rss_peak_mb": max(sampler.peak_rss_kb, peak.get("VmRSS", 0)) / 1024,
            "kb_per_stream": rss_delta / n_open if n_open else math.nan,
            "server_threads_before": before.get("Threads", 0),
            "server_threads_peak": sampler.peak_threads,
            "server_log_problems": log_problems(server.output()),
        }


async def burst(ctx: Context, subscribers: int, events: int) -> dict[str, Any]:
    with server_for(ctx) as server:
        port, pid = server.port, server.proc.pid
        ctx.publisher.port = port
        await warm_up(ctx, port)
        sampler = Sampler(pid)
        before = sampler.sample()
        cpu0, server_cpu0 = client_cpu(), proc_cpu(pid)
        sampling = asyncio.create_task(sampler.run(3600))
        channel = f"news:burst-{uuid.uuid4().hex[:8]}"
        sink = BurstSink(events)
        opened = await open_clients(port, channel, subscribers, sink, ctx.concurrency)
        sink.clients = opened.clients
        try:
            await wait_streams(port, len(opened.clients), SETTLE_LIMIT)
            await asyncio.sleep(0.2)
            sampler.sample()
            started_wall = time.time()
            started = time.perf_counter()
            c0 = client_cpu()
            await ctx.publisher.burst(channel, events)
            publish_s = time.perf_counter() - started
            deadline = time.monotonic() + BURST_LIMIT
            for _ in range(int(BURST_LIMIT / 0.1) + 1):
                if sink.done.is_set() or time.monotonic() > deadline:
                    break
                if time.monotonic() - sink.last_progress > BURST_STALL:
                    break
                try:
                    await asyncio.wait_for(sink.done.wait(), 0.1)
                except TimeoutError:
                    pass
            total_s = (sink.last - started_wall) if sink.last else math.nan
            delivery_cpu = client_cpu() - c0
            peak = sampler.sample()
        finally:
            sink.closing = True
            close_clients(opened.created)
            sampling.cancel()
        await wait_streams(port, 0, SETTLE_LIMIT)
        per_sub: list[dict[str, Any]] = []
        for index, client in enumerate(opened.clients):
            got = client.received
            per_sub.append(
                {
                    "subscriber": index,
                    "received": len(got),
                    "in_order": got == sorted(got) and len(set(got)) == len(got),
                    "complete": got == list(range(events)),
                    "closed_by_server": client.close_reason,
                }
            )
        return {
            "scenario": "burst",
            "target": ctx.target.key,
            "server": ctx.server_kind,
            "layer": ctx.layer,
            "subscribers": subscribers,
            "connected": len(opened.clients),
            "connect_errors": len(opened.errors),
            "events": events,
            "complete_subscribers": sum(1 for s in per_sub if s["complete"]),
            "all_in_order": all(s["in_order"] for s in per_sub),
            "received_min": min((s["received"] for s in per_sub), default=0),
            "received_max": max((s["received"] for s in per_sub), default=0),
            "closed_by_server": sum(1 for s in per_sub if s["closed_by_server"]),
            "publish_s": publish_s,
            "total_s": total_s,
            "delivery_client_cpu_s": delivery_cpu,
            "client_cpu_s": client_cpu() - cpu0,
            "server_cpu_s": proc_cpu(pid) - server_cpu0,
            "server_rss_peak_mb": max(sampler.peak_rss_kb, peak.get("VmRSS", 0)) / 1024,
            "server_threads_before": before.get("Threads", 0),
            "server_threads_peak": sampler.peak_threads,
            "per_subscriber": per_sub,
            "server_log_problems": log_problems(server.output()),
        }
