"""The cost of the metrics and of the lifecycle signals, in-process.

Run from the repository root::

    .venv/bin/python -m benchmarks.metrics
    .venv/bin/python -m benchmarks.metrics --streams 1000 --events 500 --repeat 5

Delivery: one hub (in-memory layer), ``--streams`` subscriptions on one
channel, ``--events`` events dispatched to them, queues drained between
events; the time per delivery (event x stream) with ``SSE_METRICS`` off and
on (prometheus_client, one process, or with ``--multiprocess`` its
multiprocess mode, which writes every count to a memory-mapped file). Lifecycle: the time of
``lifecycle.opened`` + ``lifecycle.closed`` for one stream with metrics off
and no receiver, metrics on, and a receiver connected (its delivery runs on
another thread and is not timed here). Best of ``--repeat`` runs; markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")


def _setup() -> None:
    import django

    django.setup()


async def delivery_ns(streams: int, events: int) -> float:
    """Nanoseconds per delivery (one event to one stream)."""
    from django_sse.events import build_event
    from django_sse.hub import Hub

    hub = Hub(asyncio.get_running_loop())
    subs = [await hub.subscribe(("public",), events + 1) for _ in range(streams)]
    batch = [build_event("public", "message", {"n": i}) for i in range(events)]
    started = time.perf_counter_ns()
    for event in batch:
        hub.dispatch(event)
    elapsed = time.perf_counter_ns() - started
    for sub in subs:
        sub.drain()
    await hub.stop(grace=0.1)
    return elapsed / (streams * events)


async def lifecycle_ns(rounds: int) -> float:
    """Nanoseconds for the opening and closing of one stream's lifecycle calls."""
    from django_sse import lifecycle

    user: Any = None
    started = time.perf_counter_ns()
    for _ in range(rounds):
        track = lifecycle.opened(user, ("public",), "asgi", 1)
        lifecycle.closed(track, None, 0)
    elapsed = time.perf_counter_ns() - started
    await lifecycle.flush(30.0)
    return elapsed / rounds


def best(func: Any, repeat: int, *args: Any) -> float:
    return min(asyncio.run(func(*args)) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20000, help="lifecycle rounds")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--multiprocess",
        action="store_true",
        help="count in prometheus_client's multiprocess mode (files in a temporary folder)",
    )
    args = parser.parse_args()
    folder = None
    if args.multiprocess:
        # Read when prometheus_client is imported: set before anything imports it.
        folder = tempfile.TemporaryDirectory(prefix="sse-prom-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder.name
    _setup()
    from django.test import override_settings

    from django_sse.signals import stream_closed, stream_opened

    rows: list[tuple[str, float, float]] = []
    # One stream: the per-event cost of the count shows; many: it is shared.
    for streams, events in ((1, args.events * 50), (args.streams, args.events)):
        off = best(delivery_ns, args.repeat, streams, events)
        with override_settings(SSE_METRICS=True):
            on = best(delivery_ns, args.repeat, streams, events)
        rows.append((f"{streams} stream(s) x {events} events", off, on))
    mode = "multiprocess mode" if args.multiprocess else "one process"
    print(f"## Metrics cost (in-process, {mode}; {os.cpu_count()} cores, shared with other work)\n")
    print("| path | metrics off, ns | metrics on, ns | difference |")
    print("|---|---:|---:|---:|")
    for name, a, b in rows:
        change = f"{b - a:+.1f} ns ({(b - a) / a:+.1%})"
        print(f"| {name}, per delivery | {a:.1f} | {b:.1f} | {change} |")

    bare = best(lifecycle_ns, args.repeat, args.rounds)
    with override_settings(SSE_METRICS=True):
        metered = best(lifecycle_ns, args.repeat, args.rounds)

    def receiver(**kwargs: Any) -> None:
        pass

    stream_opened.connect(receiver)
    stream_closed.connect(receiver)
    try:
        listened = best(lifecycle_ns, args.repeat, min(args.rounds, 2000))
    finally:
        stream_opened.disconnect(receiver)
        stream_closed.disconnect(receiver)
    print("\n## Stream lifecycle cost (opened + closed, per stream)\n")
    print("| case | µs per stream |")
    print("|---|---:|")
    print(f"| metrics off, no receiver | {bare / 1000:.2f} |")
    print(f"| metrics on, no receiver | {metered / 1000:.2f} |")
    print(f"| metrics off, a receiver of each signal (sending only) | {listened / 1000:.2f} |")
    flag = " --multiprocess" if args.multiprocess else ""
    print(
        f"\n`python -m benchmarks.metrics --streams {args.streams} --events {args.events} "
        f"--rounds {args.rounds} --repeat {args.repeat}{flag}`"
    )
    if folder is not None:
        folder.cleanup()


if __name__ == "__main__":
    main()
