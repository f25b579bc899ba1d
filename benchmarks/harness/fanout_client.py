"""A fan-out load-client process: ``python -m benchmarks.harness.fanout_client CONFIG``.

The multi-process scenario spreads its streams over several of these, each
holding fewer descriptors than the open-file limit (one per stream).
CONFIG is JSON: ``{"port": P, "channel": "news:x", "count": N,
"concurrency": C}``. The process opens N streams on the channel (the load
client of :mod:`benchmarks.harness.client`), prints ``{"ready": n, ...}``,
then answers one JSON command per line on stdin:

* ``{"cmd": "start", "round": r}``: answers ``{"started": r, "expected": e}``
  at once (the orchestrator publishes only after every process has
  answered), then, when every open stream has the round's event or
  ``ROUND_LIMIT`` has passed, ``{"round": r, "latencies": [...], "busy": b}``
  (seconds; ``busy`` is this process's CPU over the wall time of the round);
* ``{"cmd": "close"}``: closes every stream, answers ``{"closed": n, ...}``
  and exits.

Latency is receipt ``time.time()`` minus the publisher's stamp, as in the
one-process fan-out: every process is on the same machine and clock.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from benchmarks.harness.client import FanoutSink, close_clients, open_clients
from benchmarks.harness.fanout import ROUND_LIMIT
from benchmarks.harness.measure import client_cpu


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def finish_round(sink: FanoutSink, number: int, cpu0: float, wall0: float) -> None:
    try:
        await asyncio.wait_for(sink.done.wait(), ROUND_LIMIT)
    except TimeoutError:
        pass
    wall = time.perf_counter() - wall0
    busy = (client_cpu() - cpu0) / wall if wall > 0 else 0.0
    say({"round": number, "latencies": list(sink.latencies), "busy": busy})


async def main(config: dict[str, Any]) -> None:
    sink = FanoutSink()
    opened = await open_clients(
        config["port"], config["channel"], config["count"], sink, config["concurrency"]
    )
    say(
        {
            "ready": len(opened.clients),
            "errors": len(opened.errors),
            "first_error": opened.errors[0] if opened.errors else None,
            "seconds": opened.seconds,
        }
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task[None]] = set()
    try:
        while line := await reader.readline():
            command = json.loads(line)
            if command["cmd"] == "start":
                number = int(command["round"])
                expected = sum(1 for c in opened.clients if not c.lost)
                sink.start_round(number, expected)
                cpu0, wall0 = client_cpu(), time.perf_counter()
                say({"started": number, "expected": expected})
                task = asyncio.create_task(finish_round(sink, number, cpu0, wall0))
                pending.add(task)
                task.add_done_callback(pending.discard)
            elif command["cmd"] == "close":
                break
        # Before closing: streams the server or nginx dropped during the rounds.
        summary = {
            "closed": len(opened.clients),
            "closed_by_server": sink.closed,
            "dropped": sum(1 for c in opened.clients if c.lost),
            "stray": sink.stray,
        }
    finally:
        close_clients(opened.created)
    say(summary)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
