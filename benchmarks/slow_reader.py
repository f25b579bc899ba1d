"""Server memory while one subscriber stops reading, under uvicorn and daphne.

Run from the repository root::

    .venv/bin/python benchmarks/slow_reader.py
    .venv/bin/python benchmarks/slow_reader.py --seconds 10 --servers uvicorn

For each server (a fresh process, ``tests.asgi``, in-memory layer): one stream
that reads normally and ``--slow`` streams that read their first chunk and then
stop reading (small receive buffer, ``pause_reading()``). The server publishes
``--rate`` events per second of ``--size`` bytes (``POST /test/publish/``) for
``--seconds``; its RSS and hub stream count are sampled once a second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import client as load  # noqa: E402
from benchmarks.harness import fanout as scenarios  # noqa: E402
from benchmarks.harness import measure as proc  # noqa: E402
from benchmarks.harness import setup  # noqa: E402

HOST = load.HOST
#: Requests per second to the publish endpoint; each carries rate / TICKS events.
TICKS = 10
RCVBUF = 4096


class Counter(load.Sink):
    def __init__(self) -> None:
        self.events = 0
        self.closed: list[str] = []

    def on_event(self, client: load.SSEClient, name: str, data: str, now: float) -> None:
        if name == load.EVENT:
            self.events += 1
        elif name == "stream-closed":
            self.closed.append(json.loads(data).get("reason", ""))


class StalledClient(load.SSEClient):
    """Reads until the stream is open, then never again."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.ready.done() and self.transport is not None:
            self.transport.pause_reading()


async def open_stalled(port: int, channel: str, sink: load.Sink) -> StalledClient:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    # A small receive window, so the server sees back-pressure within kilobytes.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setblocking(False)
    await asyncio.wait_for(loop.sock_connect(sock, (HOST, port)), load.HTTP_LIMIT)
    request = (
        f"GET /sse/?channel={channel} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    _, client = await loop.create_connection(lambda: StalledClient(request, sink), sock=sock)
    await asyncio.wait_for(client.ready, load.HTTP_LIMIT)
    return client


async def measure(kind: str, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    from tests.servers import running_server

    with running_server(kind, **env) as server:
        port, pid = server.port, server.proc.pid
        channel = f"news:slow-{uuid.uuid4().hex[:8]}"
        reader, stalled = Counter(), Counter()
        opened = await load.open_clients(port, channel, 1, reader, 1)
        slow = [await open_stalled(port, channel, stalled) for _ in range(args.slow)]
        try:
            await load.wait_streams(port, 1 + args.slow, scenarios.SETTLE_LIMIT)
            per_tick = max(1, args.rate // TICKS)
            body = json.dumps(
                {
                    "channel": channel,
                    "event": load.EVENT,
                    "count": per_tick,
                    "data": {"pad": "x" * args.size},
                }
            ).encode()
            samples: list[dict[str, Any]] = []
            started = time.monotonic()
            for tick in range(args.seconds * TICKS + 1):
                if tick % TICKS == 0:
                    samples.append(
                        {
                            "t": round(time.monotonic() - started),
                            "rss_mb": proc.proc_status(pid)["VmRSS"] / 1024,
                            "streams": await load.server_streams(port),
                            "delivered": reader.events,
                        }
                    )
                await load.http_request(port, "POST", "/test/publish/", body)
                # Paced against the start, so slow requests do not lower the rate.
                delay = started + (tick + 1) / TICKS - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        finally:
            load.close_clients(opened.created + list(slow))
        published = (args.seconds * TICKS + 1) * per_tick
        return {
            "server": kind,
            "samples": samples,
            "published": published,
            "reader_delivered": reader.events,
            "log_problems": proc.log_problems(server.output()),
        }


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    out = [
        f"{args.slow} stalled stream(s) and 1 reading stream; {args.rate} events/s of "
        f"{args.size} B for {args.seconds} s; in-memory layer.",
        "",
        "| server | t s | RSS MB | hub streams | delivered to the reader |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        for s in r["samples"]:
            out.append(
                f"| {r['server']} | {s['t']} | {s['rss_mb']:.1f} | {s['streams']} "
                f"| {s['delivered']} |"
            )
    out += [
        "",
        "| server | RSS first/last/max MB | RSS growth, second half, MB/s "
        "| hub streams at the end | reader got |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        samples = r["samples"]
        rss = [s["rss_mb"] for s in samples]
        half = samples[len(samples) // 2]
        span = samples[-1]["t"] - half["t"]
        growth = (rss[-1] - half["rss_mb"]) / span if span else float("nan")
        out.append(
            f"| {r['server']} | {rss[0]:.1f}/{rss[-1]:.1f}/{max(rss):.1f} | {growth:.2f} "
            f"| {samples[-1]['streams']} | {r['reader_delivered']}/{r['published']} |"
        )
    return "\n".join(out) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="uvicorn,daphne")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--rate", type=int, default=200, help="events per second")
    parser.add_argument("--size", type=int, default=1000, help="payload bytes per event")
    parser.add_argument("--slow", type=int, default=1, help="streams that stop reading")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup.stop_on_sigterm()
    results = []
    with setup.memory_server_env("slow") as env:
        for kind in [k for k in args.servers.split(",") if k]:
            print(f"{kind}: {args.seconds} s ...", file=sys.stderr, flush=True)
            results.append(asyncio.run(measure(kind, env, args)))
    print(report(results, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
