"""Presence at scale: a join storm, ``presence()`` latency, Redis memory per
member, and the CPU a presence channel costs per stream.

Run from the repository root::

    .venv/bin/python benchmarks/presence.py                       # 1,000 members + 9,000 anonymous
    .venv/bin/python benchmarks/presence.py --members 200 --anonymous 4800

Two uvicorn processes (``tests.asgi``, the fast path) on a private Redis with
the pub/sub layer, half the streams on each. Members are signed-in users (a
session each, made in bulk); every join reaches every open stream, so members
cost one delivery per join per open stream (members x streams in a storm),
and anonymous streams (counted, never announced) make up the rest. The load
client (raw sockets) runs in this process.

Figures:

- join storm: every stream opened at once; seconds until ``presence()``
  counts every member and stream, and streams per second;
- ``presence()`` p50/p99: ``--reads`` calls from this process once the storm
  has settled (one Redis script each);
- Redis memory per member: ``MEMORY USAGE`` of the channel's keys / members;
- extra CPU per stream: both servers' CPU time (user + system) to open the
  anonymous streams and hold them through ``--idle`` seconds (heartbeats
  included), on a presence channel minus on a plain one, per stream.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _common  # noqa: E402

HEARTBEAT, TIMEOUT = "5", "15"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def signal_check_ns() -> float:
    """What a stream open pays for the occupancy signals with no receiver
    connected: the two ``has_listeners()`` checks (nothing is counted then)."""
    import timeit

    from django_sse import signals

    def check() -> bool:
        return signals.channel_occupied.has_listeners() or signals.channel_vacated.has_listeners()

    runs = 200_000
    return min(timeit.repeat(check, number=runs, repeat=5)) / runs * 1e9


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def open_all(readers: list[Any], timeout: float) -> None:
    for reader in readers:
        reader.start()
    await asyncio.wait_for(asyncio.gather(*(r.opened.wait() for r in readers)), timeout)
    if {r.status for r in readers} != {200}:
        raise RuntimeError(f"statuses: {sorted({r.status for r in readers})}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import redis as sync_redis

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    from tests.presence_client import RawReader
    from tests.servers import private_redis, run_python, running_server

    out: dict[str, Any] = {}
    with _common.memory_server_env("presence") as base, private_redis() as redis:
        env = {
            **base,
            "SSE_TEST_LAYER": "redis",
            "REDIS_URL": redis.url,
            "SSE_QUEUE_SIZE": str(args.queue or max(1000, 2 * args.members)),
            "SSE_PRESENCE_HEARTBEAT": HEARTBEAT,
            "SSE_PRESENCE_TIMEOUT": TIMEOUT,
        }
        status, keys, err = await run_python(
            "-m",
            "tests.make_sessions",
            "bench-",
            str(args.members),
            env={"SSE_TEST_DB": base["SSE_TEST_DB"]},
        )
        if status:
            raise RuntimeError(err)
        cookies = [f"sessionid={k}" for k in keys.split()]
        os.environ.update({"SSE_TEST_LAYER": "redis", "REDIS_URL": redis.url})
        import django

        django.setup()
        from django_sse.presence_store import PRESENCE, get_backend

        backend = get_backend()
        client = sync_redis.Redis.from_url(redis.url)
        with (
            running_server("uvicorn", **env, SSE_TEST_DOOR="fast") as one,
            running_server("uvicorn", **env, SSE_TEST_DOOR="fast") as two,
        ):
            ports = [one.port, two.port]
            pids = [one.proc.pid, two.proc.pid]

            def readers(channel: str, count: int, with_cookies: bool) -> list[Any]:
                return [
                    RawReader(
                        "127.0.0.1",
                        ports[i % 2],
                        f"/sse/?channel={channel}",
                        cookies[i] if with_cookies else "",
                        parse=with_cookies,
                    )
                    for i in range(count)
                ]

            # Extra CPU per stream: anonymous streams on a plain channel, then on a presence one.
            cpu: dict[str, float] = {}
            # A warm-up first (imports, first connections), then the pair twice: the lower.
            runs = [("warm-up", "news:bench-warm")] + [
                ("plain", "news:bench"),
                ("presence", "lobby:bench-anon"),
            ] * 2
            for kind, channel in runs:
                group = readers(channel, args.anonymous, False)
                before = sum(cpu_seconds(p) for p in pids)
                began = time.monotonic()
                await open_all(group, 300)
                out[f"open_{kind}_s"] = time.monotonic() - began
                await asyncio.sleep(args.idle)
                spent = sum(cpu_seconds(p) for p in pids) - before
                cpu[kind] = min(cpu.get(kind, spent), spent)
                await asyncio.gather(*(r.stop() for r in group))
                await asyncio.sleep(1)
            out["cpu_plain_us"] = cpu["plain"] / max(args.anonymous, 1) * 1e6
            out["cpu_presence_us"] = cpu["presence"] / max(args.anonymous, 1) * 1e6

            # The join storm: members and anonymous streams, all at once.
            channel = "lobby:bench"
            group = readers(channel, args.members, True) + readers(channel, args.anonymous, False)
            total = len(group)
            start = time.monotonic()
            await open_all(group, 600)
            while True:
                state = await backend.read(PRESENCE, channel)
                if len(state.members) == args.members and state.streams == total:
                    break
                if time.monotonic() - start > 600:
                    raise TimeoutError(f"{len(state.members)} members, {state.streams} streams")
                await asyncio.sleep(0.05)
            out["storm_s"] = time.monotonic() - start
            out["streams"] = total
            expected = args.members
            while any(len(r.view.members) != expected for r in group[: args.members]):
                if time.monotonic() - start > 900:
                    break
                await asyncio.sleep(0.2)
            out["converged_s"] = time.monotonic() - start
            out["pages_right"] = sum(len(r.view.members) == expected for r in group[:expected])

            latencies = []
            for _ in range(args.reads):
                t = time.perf_counter()
                await backend.read(PRESENCE, channel)
                latencies.append((time.perf_counter() - t) * 1000)
            out["read_p50_ms"] = percentile(latencies, 0.5)
            out["read_p99_ms"] = percentile(latencies, 0.99)
            base_key = "sse:pr:{lobby:bench}:"
            used = sum(client.memory_usage(base_key + s) or 0 for s in "zsumv")
            out["bytes_per_member"] = used / max(args.members, 1)
            await asyncio.gather(*(r.stop() for r in group))
        out["signal_check_ns"] = signal_check_ns()
    return out


def report(r: dict[str, Any], args: argparse.Namespace) -> str:
    return "\n".join(
        [
            f"Presence, 2 uvicorn processes on one Redis, {r['streams']:,} streams on one "
            f"channel ({args.members:,} members + {args.anonymous:,} anonymous), "
            f"heartbeat {HEARTBEAT} s, timeout {TIMEOUT} s",
            "",
            "| figure | value |",
            "|---|---|",
            f"| join storm: all counted by `presence()` | {r['storm_s']:.1f} s "
            f"({r['streams'] / r['storm_s']:,.0f} streams/s) |",
            f"| for comparison: {args.anonymous:,} anonymous streams open at once, plain channel | "
            f"{r['open_plain_s']:.1f} s (presence channel: {r['open_presence_s']:.1f} s) |",
            f"| join storm: every member's page lists every member | {r['converged_s']:.1f} s "
            f"({r['pages_right']:,} of {args.members:,} pages right) |",
            f"| `presence()` p50 / p99 ({args.reads} reads) | {r['read_p50_ms']:.2f} / "
            f"{r['read_p99_ms']:.2f} ms |",
            f"| Redis memory per member | {r['bytes_per_member']:.0f} bytes |",
            f"| server CPU per stream, plain channel (open + {args.idle:g} s idle) | "
            f"{r['cpu_plain_us']:.0f} µs |",
            f"| server CPU per stream, presence channel (same) | {r['cpu_presence_us']:.0f} µs |",
            f"| extra CPU per stream for presence | "
            f"{r['cpu_presence_us'] - r['cpu_plain_us']:.0f} µs |",
            f"| occupancy signals with no receiver, per stream open | "
            f"{r['signal_check_ns']:.0f} ns |",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--anonymous", type=int, default=9000)
    parser.add_argument(
        "--queue", type=int, default=0, help="SSE_QUEUE_SIZE (default: 2 x members)"
    )
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--idle", type=float, default=12.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    _common.stop_on_sigterm()
    args = parse_args(argv)
    print(report(asyncio.run(run(args)), args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(argv=None))
