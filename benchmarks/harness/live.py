"""``send-event``: what ``send_event`` costs a sync view in a running uvicorn.

Per library and configuration a fresh server (its own migrated SQLite file)
serves ``POST /bench/send/`` (:mod:`benchmarks.live.views`, the same view for
both libraries): 50 untimed calls, then ``count`` calls timed one by one inside
the view, no subscribers. django_sse with the in-memory and the Redis layer and
its SQLite settings (WAL, synchronous=NORMAL) and SQLite's defaults (rollback
journal); django-eventstream with ``DjangoModelStorage`` on the same two.
django_sse also on PostgreSQL (a throwaway database on 127.0.0.1:5432 per row,
dropped afterwards; ``--no-postgres`` skips it).
"""

from __future__ import annotations

import asyncio
import json
import math
from contextlib import ExitStack
from typing import Any

from benchmarks.harness.client import http_request
from benchmarks.harness.history import postgres_database
from benchmarks.harness.measure import summary
from benchmarks.harness.report import log, table
from benchmarks.harness.setup import redis_url
from benchmarks.harness.targets import TARGETS, Target, database, running

WARMUP = 50
RECOMMENDED = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
POSTGRES = "PostgreSQL (synchronous_commit=on)"
#: (label, SQLite init_command) of each run: the test project's settings and SQLite's own.
SQLITE = [
    ("WAL, synchronous=NORMAL", RECOMMENDED),
    # WAL persists in a file (migrated with the settings above): asked back off.
    ("SQLite's defaults (rollback journal, synchronous=FULL)", "PRAGMA journal_mode=DELETE;"),
]


async def timed(port: int, count: int) -> list[float]:
    body = json.dumps({"channel": "news:send-cost", "count": count}).encode()
    answer = json.loads(await http_request(port, "POST", "/bench/send/", body))
    return [float(x) for x in answer["ms"]]


async def one(
    target: Target, layer: str, sqlite: str, url: str, count: int, pg: str | None = None
) -> dict[str, Any]:
    with database(target, layer, url if layer == "redis" else "") as env:
        env["BENCH_SQLITE_INIT"] = sqlite
        if pg is not None:
            # tests/settings.py takes SSE_TEST_DB first: blank it.
            env.update(SSE_TEST_DB="", SSE_TEST_POSTGRES="1", SSE_TEST_POSTGRES_DB=pg)
        if target.ours:
            env["DJANGO_SETTINGS_MODULE"] = "benchmarks.live.settings"
        else:
            env["PEER_REDIS_URL"] = url if layer == "redis" else ""
            if layer != "redis":
                env.pop("PEER_REDIS_URL")
        with running(target, env) as server:
            await timed(server.port, WARMUP)
            times = await timed(server.port, count)
    return {"calls": len(times), **summary(times)}


def configurations(targets: list[Target]) -> list[tuple[Target, str]]:
    out: list[tuple[Target, str]] = []
    for t in targets:
        if t.key == "fast":
            out += [(t, "memory"), (t, "redis")]
        elif t.key == "peer-db":
            out += [(t, "memory"), (t, "redis")]
    if not out:
        out = [(TARGETS["fast"], "memory"), (TARGETS["peer-db"], "memory")]
    return out


def run(targets: list[Target], count: int, postgres: bool = True) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        url = redis_url(stack)
        for target, layer in configurations(targets):
            runs: list[tuple[str, str, bool]] = [(label, init, False) for label, init in SQLITE]
            if target.ours:
                runs.append((POSTGRES, "", True))
            for label, sqlite, on_postgres in runs:
                log(f"send-event: {target.label}, {layer} layer, {label} ...")
                try:
                    if on_postgres:
                        with postgres_database(not postgres) as (pg, reason):
                            if pg is None:
                                log(f"  skipped: {reason}")
                                continue
                            r = asyncio.run(one(target, layer, "", url, count, pg))
                    else:
                        r = asyncio.run(one(target, layer, sqlite, url, count))
                except Exception as exc:
                    log(f"  failed: {exc!r}")
                    r = {"error": repr(exc)[:300]}
                results.append({"target": target.key, "label": target.label, "layer": layer,
                                "sqlite": label, **r})  # fmt: skip
                if "p50" in r:
                    log(f"  p50 {r['p50']:.3f} ms")
    return results


def markdown(results: list[dict[str, Any]], count: int) -> list[str]:
    # Compared on the same SQLite settings and the same layer (in-process / Redis).
    peer = {
        (r["sqlite"], r["layer"]): r["p50"]
        for r in results
        if r["target"] == "peer-db" and "p50" in r
    }
    rows: list[list[Any]] = []
    for r in results:
        if "error" in r:
            rows.append([r["label"], r["layer"], r["sqlite"], r["error"], *[""] * 5])
            continue
        base = peer.get((r["sqlite"], r["layer"]))
        faster = f"{base / r['p50']:.1f}x" if base and r["target"] != "peer-db" else "-"
        layer = (
            r["layer"]
            if r["target"] != "peer-db"
            else ("Redis notification" if r["layer"] == "redis" else "in-process")
        )
        rows.append([r["label"], layer, r["sqlite"], r["p50"], r["p95"], r["p99"], r["mean"],
                     r["max"], faster])  # fmt: skip
        if math.isnan(r["p50"]):
            rows[-1][-1] = "-"
    header = ["library", "layer", "database", "p50 ms", "p95 ms", "p99 ms", "mean ms", "max ms",
              "django-eventstream p50 / this p50"]  # fmt: skip
    return [
        f"`send_event` timed inside a sync view (`POST /bench/send/`) of a running uvicorn: "
        f"{WARMUP} untimed calls, then {count} timed, no subscribers; a fresh server and "
        "database per row (SQLite: a migrated file; PostgreSQL: a throwaway database).",
        "",
        *table(header, rows, 3),
    ]
