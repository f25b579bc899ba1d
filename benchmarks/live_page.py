"""The admin's Live page under many open streams: does it render in bounded time?

Run from the repository root::

    .venv/bin/python -m benchmarks.live_page                       # 10,000 streams
    .venv/bin/python -m benchmarks.live_page --streams 2000 --channels 200

One uvicorn process (``tests.asgi``, the fast path, in-memory layer, a fresh
SQLite file). The streams are opened by the benchmark process itself with the
light client of ``benchmarks/fanout.py``, spread over ``--channels`` channels;
then a staff user's ``GET /sse/live/`` is timed ``--requests`` times, at each
size of ``--steps``. The page reads every hub once per request and shows at
most 50 channels per process, so its time and size should stay flat.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks import _common, fanout  # noqa: E402


class Quiet(fanout.Sink):
    def on_event(self, client: fanout.SSEClient, name: str, data: str, now: float) -> None:
        pass


async def time_page(base: str, requests: int) -> tuple[list[float], int, str]:
    async with httpx.AsyncClient(timeout=60.0) as client:
        login = await client.get(
            f"{base}/test/login/",
            params={"username": "bench-operator", "staff": "1", "perm": "django_sse.view_live"},
        )
        login.raise_for_status()
        seconds: list[float] = []
        size = 0
        text = ""
        for _ in range(requests):
            started = time.perf_counter()
            response = await client.get(f"{base}/sse/live/")
            seconds.append(time.perf_counter() - started)
            response.raise_for_status()
            size, text = len(response.content), response.text
        return seconds, size, text


async def run(args: argparse.Namespace) -> None:
    from tests.servers import running_server

    steps = sorted({int(s) for s in args.steps.split(",")} | {args.streams})
    fanout.raise_nofile(max(steps))
    rows: list[str] = []
    with _common.memory_server_env("live") as env, running_server("uvicorn", **env) as server:
        clients: list[fanout.SSEClient] = []
        sink = Quiet()
        try:
            for size in steps:
                missing = size - len(clients)
                per_channel = max(1, missing // args.channels)
                while missing > 0:
                    batch = min(per_channel, missing)
                    channel = f"news:bench{len(clients) % args.channels}"
                    opened = await fanout.open_clients(server.port, channel, batch, sink, 64)
                    if opened.errors:
                        raise RuntimeError(
                            f"{len(opened.errors)} streams failed: {opened.errors[:3]}"
                        )
                    clients.extend(opened.clients)
                    missing -= batch
                streams = await fanout.wait_streams(server.port, len(clients), 60.0)
                seconds, body, text = await time_page(server.url, args.requests)
                assert f'id="sse-total-streams">{streams}<' in text, "the page miscounted"
                rows.append(
                    f"| {streams:,} | {statistics.median(seconds) * 1000:.1f} | "
                    f"{max(seconds) * 1000:.1f} | {body / 1024:.1f} |"
                )
        finally:
            fanout.close_clients(clients)
    print("## Live page render time (uvicorn, fast path, in-memory layer, one process)\n")
    print(
        f"{args.channels} channels, {args.requests} requests per size; the machine's 2 cores "
        "are shared by the server, this load client and other work.\n"
    )
    print("| open streams | p50 ms | max ms | page KB |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        print(row)
    print(
        f"\n`python -m benchmarks.live_page --streams {args.streams} --channels {args.channels} "
        f"--steps {args.steps} --requests {args.requests}`"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=10000)
    parser.add_argument("--channels", type=int, default=500)
    parser.add_argument("--steps", default="0,1000")
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    _common.stop_on_sigterm()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
