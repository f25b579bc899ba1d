"""Inbox benchmark: ``notify()`` to many users, the unread count at scale, the
badge's render cost, and ``send_events`` throughput.

Run from the repository root::

    .venv/bin/python benchmarks/inbox.py
    .venv/bin/python benchmarks/inbox.py --users 10000 --rows 1000000 --count-users 10000
    .venv/bin/python benchmarks/inbox.py --no-postgres --users 2000 --rows 100000

Each database runs in a process of its own (``tests.settings`` on a fresh
migrated SQLite file with WAL, or a throwaway PostgreSQL database
``sse_bench_<random>`` on 127.0.0.1:5432, dropped at the end), with the
in-memory layer and no subscribers, so the numbers are the database work.

- ``notify(User.objects.all(), ...)`` to ``--users`` users: wall time and queries.
- ``send_events`` of ``--events`` events over 100 channels: events per second.
- The unread count: ``--rows`` inbox rows spread over ``--count-users`` users
  (one in five unread), then ``inbox.unread_count(user)`` for 200 random users:
  p50 and p95 per call.
- ``{% sse_inbox_badge %}``: one render (the count query included), p50 and p95.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WORKER_LIMIT = 1800.0
SAMPLES = 200


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _fill_rows(rows: int, users: list[int]) -> float:
    """Insert ``rows`` inbox rows round-robin over ``users``; one in five unread."""
    from django.db import connection

    from django_sse.models import InboxItem

    table = connection.ops.quote_name(InboxItem._meta.db_table)
    started = time.perf_counter()
    batch = 5000
    with connection.cursor() as cursor:
        for start in range(0, rows, batch):
            values = []
            params: list[Any] = []
            for i in range(start, min(rows, start + batch)):
                values.append("(%s, %s, %s, %s, %s, %s, %s, %s, %s)")
                params += [users[i % len(users)], f"row {i}", "info", "", "", "", "{}"]
                params += [
                    "2026-01-01 00:00:00+00",
                    None if i % 5 == 0 else "2026-01-02 00:00:00+00",
                ]
            cursor.execute(
                f"INSERT INTO {table} (recipient_id, message, level, url, actor_id, target_id, "
                "data, created, read_at) VALUES " + ", ".join(values),
                params,
            )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")
    return time.perf_counter() - started


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.template import Context, Template
    from django.test import RequestFactory
    from django.test.utils import CaptureQueriesContext

    from django_sse import inbox, notify, send_events
    from django_sse.channels import registry
    from django_sse.models import InboxItem

    registry.register("bench:{n}", lambda user, n: True)
    User = get_user_model()
    out: dict[str, Any] = {"vendor": connection.vendor}

    # notify() to many users.
    User.objects.bulk_create(
        [User(username=f"b{i}") for i in range(spec["users"])], batch_size=2000
    )
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        sent = notify(User.objects.filter(username__startswith="b"), "Maintenance at 18:00")
        out["notify_s"] = time.perf_counter() - started
    out["notify_queries"] = len(queries.captured_queries)
    assert len(sent) == spec["users"]

    # send_events: one batch over 100 channels, several times (the machine is shared).
    events = [(f"bench:{i % 100}", "e", {"n": i}) for i in range(spec["events"])]
    send_events(events[:100])  # warm up
    runs = []
    for _ in range(spec["repeat"]):
        started = time.perf_counter()
        send_events(events)
        runs.append(time.perf_counter() - started)
    out["send_events_s"] = statistics.median(runs)
    out["send_events_best_s"] = min(runs)

    # The unread count at scale.
    count_users = list(
        User.objects.bulk_create(
            [User(username=f"c{i}") for i in range(spec["count_users"])], batch_size=2000
        )
    )
    pks = [u.pk for u in count_users]
    out["fill_s"] = _fill_rows(spec["rows"], pks)
    rng = random.Random(1)
    timings = []
    for _ in range(SAMPLES):
        user = rng.choice(count_users)
        started = time.perf_counter()
        inbox.unread_count(user)
        timings.append(time.perf_counter() - started)
    out["count_p50_ms"] = statistics.median(timings) * 1000
    out["count_p95_ms"] = percentile(timings, 0.95) * 1000
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            table = connection.ops.quote_name(InboxItem._meta.db_table)
            cursor.execute(
                f"EXPLAIN SELECT COUNT(*) FROM {table} WHERE recipient_id = %s AND read_at IS NULL",
                [pks[0]],
            )
            out["count_plan"] = " / ".join(row[0].strip() for row in cursor.fetchall()[:3])

    # The badge.
    page = Template("{% load django_sse %}{% sse_inbox_badge %}")
    request = RequestFactory().get("/")
    timings = []
    for _ in range(SAMPLES):
        request.user = rng.choice(count_users)
        started = time.perf_counter()
        page.render(Context({"request": request}))
        timings.append(time.perf_counter() - started)
    out["badge_p50_ms"] = statistics.median(timings) * 1000
    out["badge_p95_ms"] = percentile(timings, 0.95) * 1000
    return out


def run_worker(env: dict[str, str], spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=WORKER_LIMIT,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"worker failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


@contextmanager
def sqlite_env() -> Iterator[dict[str, str]]:
    from tests.servers import base_env, migrate

    with tempfile.TemporaryDirectory(prefix="sse-inbox-bench-") as tmp:
        db = str(Path(tmp) / "bench.sqlite3")
        migrate(db)
        yield base_env(SSE_TEST_DB=db, SSE_TEST_LAYER="memory")


@contextmanager
def postgres_env() -> Iterator[dict[str, str]]:
    import psycopg

    from tests.servers import base_env

    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    name = f"sse_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = base_env(
            SSE_TEST_DB="",
            SSE_TEST_POSTGRES="1",
            SSE_TEST_POSTGRES_DB=name,
            SSE_TEST_LAYER="memory",
        )
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=WORKER_LIMIT,
        )
        yield env
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--count-users", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5, help="send_events batches timed")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))))
        return
    spec = {
        "users": args.users,
        "events": args.events,
        "rows": args.rows,
        "count_users": args.count_users,
        "repeat": args.repeat,
    }
    results: list[tuple[str, dict[str, Any]]] = []
    if not args.no_sqlite:
        with sqlite_env() as env:
            results.append(("SQLite (WAL)", run_worker(env, spec)))
    if not args.no_postgres:
        with postgres_env() as env:
            results.append(("PostgreSQL", run_worker(env, spec)))
    print(
        f"\n### notify() to {args.users:,} users (a queryset), "
        f"and send_events of {args.events:,} events\n"
    )
    print("| database | notify wall time | queries | send_events (median) | events/s | best |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results:
        rate = args.events / r["send_events_s"]
        print(
            f"| {name} | {r['notify_s'] * 1000:,.0f} ms | {r['notify_queries']} | "
            f"{r['send_events_s'] * 1000:,.0f} ms | {rate:,.0f} | "
            f"{args.events / r['send_events_best_s']:,.0f} |"
        )
    print(
        f"\n### Unread count at {args.rows:,} rows for {args.count_users:,} users, and the badge\n"
    )
    print("| database | unread_count p50 | p95 | {% sse_inbox_badge %} p50 | p95 | fill time |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results:
        print(
            f"| {name} | {r['count_p50_ms']:.2f} ms | {r['count_p95_ms']:.2f} ms | "
            f"{r['badge_p50_ms']:.2f} ms | {r['badge_p95_ms']:.2f} ms | {r['fill_s']:.0f} s |"
        )
    for name, r in results:
        if "count_plan" in r:
            print(f"\n{name} plan of the count: `{r['count_plan']}`")


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    main()
