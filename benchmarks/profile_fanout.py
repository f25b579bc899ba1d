"""Where a fan-out spends the server's time: pyinstrument inside the server.

Run from the repository root (needs the ``bench`` extra)::

    .venv/bin/python benchmarks/profile_fanout.py
    .venv/bin/python benchmarks/profile_fanout.py --clients 1000 --rounds 5

One uvicorn process (``benchmarks.profiled_asgi``: the test project on the fast
path, in-memory layer). ``--clients`` streams connect on one channel; then the
profiler starts, ``--rounds`` events are published from inside the server
(``POST /test/publish/``, as in the fan-out scenario of ``benchmarks/bench.py``)
and each is awaited at every client, and the profiler's text report of that
window is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import client, measure, setup  # noqa: E402
from benchmarks.harness import fanout as scenarios  # noqa: E402


async def run(args: argparse.Namespace, env: dict[str, str]) -> str:
    from tests.servers import running_server

    app = "benchmarks.profiled_asgi:application"
    with running_server("uvicorn", app=app, **env) as server:
        port = server.port
        publisher = scenarios.Publisher("memory")
        publisher.port = port
        sink = client.FanoutSink()
        channel = f"news:profile-{uuid.uuid4().hex[:8]}"
        opened = await client.open_clients(port, channel, args.clients, sink, 64)
        try:
            await client.wait_streams(port, len(opened.clients), scenarios.SETTLE_LIMIT)
            await client.http_request(port, "POST", "/bench/profile/start", b"")
            for number in range(args.rounds):
                sink.start_round(number, len(opened.clients))
                await publisher.fanout(channel, number)
                await asyncio.wait_for(sink.done.wait(), scenarios.ROUND_LIMIT)
                await asyncio.sleep(scenarios.ROUND_PAUSE)
            report = await client.http_request(port, "POST", "/bench/profile/stop", b"")
        finally:
            client.close_clients(opened.created)
        p95 = measure.percentile(sink.latencies, 95) * 1000
        head = f"{len(opened.clients)} streams, {args.rounds} rounds, last round p95 {p95:.0f} ms"
        return head + "\n\n" + report.decode()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup.stop_on_sigterm()
    measure.raise_nofile(args.clients)
    with setup.memory_server_env("profile") as env:
        print(asyncio.run(run(args, env)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
