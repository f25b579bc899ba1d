"""Connect/disconnect churn: does a server return to its baseline?

Run from the repository root::

    .venv/bin/python benchmarks/churn.py                  # 50,000 cycles
    .venv/bin/python benchmarks/churn.py --cycles 5000 --concurrency 100

One uvicorn process (``tests.asgi``, the fast path, in-memory layer). After a
warm-up of ``--warmup`` cycles the baseline is taken: RSS, threads, hub
streams, channels and joined groups (``/test/stats/``) and open file
descriptors (``/proc/<pid>/fd``, the SQLite files aside). Then ``--cycles``
streams connect, receive their first chunk and disconnect, ``--concurrency`` at
a time, each batch on a channel of its own; then the same figures again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import client, measure, setup  # noqa: E402
from benchmarks.harness import fanout as scenarios  # noqa: E402

#: RSS counts as back when within this many KB of the baseline: the allocator
#: keeps some freed arenas, so equality is not expected.
RSS_SLACK_KB = 4096
SETTLE_POLL = 0.2


async def snapshot(port: int, pid: int) -> dict[str, int]:
    stats = json.loads(await client.http_request(port, "GET", "/test/stats/"))
    status = measure.proc_status(pid)
    return {
        "RSS KB": status["VmRSS"],
        "threads": status["Threads"],
        "hub streams": int(stats["streams"]),
        "hub channels": int(stats["channels"]),
        "joined groups": int(stats["joined"]),
        "open fds (not the database)": open_fds(pid),
    }


def open_fds(pid: int) -> int:
    """Open file descriptors but the SQLite files: each worker thread of the
    server opens its own database connection when it first reads the store,
    bounded by the threads (compared on their own), not by the streams."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if ".sqlite3" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                continue
        count += 1
    return count


def back(key: str, before: int, after: int) -> bool:
    return after <= before + RSS_SLACK_KB if key == "RSS KB" else after == before


async def cycles(port: int, count: int, concurrency: int) -> tuple[int, list[str]]:
    """``count`` connect/first-chunk/disconnect cycles; returns (done, errors)."""
    done, errors = 0, []
    sink = client.FanoutSink()
    batches = (count + concurrency - 1) // concurrency
    for batch in range(batches):
        size = min(concurrency, count - done)
        channel = f"news:churn-{uuid.uuid4().hex[:8]}"
        opened = await client.open_clients(port, channel, size, sink, concurrency)
        client.close_clients(opened.created)
        done += size
        errors += opened.errors
        if batch % max(1, batches // 10) == 0:
            print(f"  {done}/{count} cycles", file=sys.stderr, flush=True)
    return done, errors


async def settle(port: int, pid: int, baseline: dict[str, int], limit: float) -> dict[str, int]:
    """Poll until every figure is back or ``limit`` seconds pass; the last snapshot."""
    deadline = time.monotonic() + limit
    now = await snapshot(port, pid)
    while time.monotonic() < deadline:
        if all(back(k, baseline[k], now[k]) for k in baseline):
            break
        await asyncio.sleep(SETTLE_POLL)
        now = await snapshot(port, pid)
    return now


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    from tests.servers import running_server

    with running_server("uvicorn", **env) as server:
        port, pid = server.port, server.proc.pid
        await cycles(port, args.warmup, args.concurrency)
        await client.wait_streams(port, 0, scenarios.SETTLE_LIMIT)
        baseline = await snapshot(port, pid)
        started = time.perf_counter()
        done, errors = await cycles(port, args.cycles, args.concurrency)
        seconds = time.perf_counter() - started
        after = await settle(port, pid, baseline, scenarios.SETTLE_LIMIT)
        return {
            "baseline": baseline,
            "after": after,
            "cycles": done,
            "errors": errors,
            "seconds": seconds,
            "log_problems": measure.log_problems(server.output()),
        }


def report(r: dict[str, Any], args: argparse.Namespace) -> str:
    out = [
        f"{r['cycles']} connect/disconnect cycles, {args.concurrency} at a time, "
        f"in {r['seconds']:.1f} s ({r['cycles'] / r['seconds']:.0f}/s); "
        f"{len(r['errors'])} failed; uvicorn, fast path.",
        "",
        "| | baseline | after | back at baseline |",
        "|---|---:|---:|---|",
    ]
    for key, before in r["baseline"].items():
        after = r["after"][key]
        ok = "yes" if back(key, before, after) else "NO"
        out.append(f"| {key} | {before} | {after} | {ok} |")
    if r["errors"]:
        out.append(f"\nfirst error: {r['errors'][0]}")
    if r["log_problems"]:
        out.append(f"\nserver log: {r['log_problems'][:3]}")
    return "\n".join(out) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=50000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=1000)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup.stop_on_sigterm()
    measure.raise_nofile(args.concurrency)
    with setup.memory_server_env("churn") as env:
        result = asyncio.run(run(args, env))
    print(report(result, args))
    return 0 if all(back(k, v, result["after"][k]) for k, v in result["baseline"].items()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
