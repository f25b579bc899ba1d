"""The resume storm: N streams over a few channels, the server killed (-9) and
started again while a publisher in another process keeps publishing; every
client comes back with its ``Last-Event-ID``, all at once or with the JS
helper's jittered backoff. Run for django_sse (fast path, Redis layer, SQLite
store) and for django-eventstream with ``DjangoModelStorage`` (its Redis
notification, the same SQLite settings), in the same invocation.

Reported: seconds from the restart (and from the last publish) until every
client had every event, lost / duplicated / out of order (all must be 0),
store reads of the new process (``/test/stats/``'s ``store_reads``; the peer
has no such counter), closes for ``overflow``, and the new server's RSS.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.harness import measure
from benchmarks.harness.client import http_request, wait_streams
from benchmarks.harness.report import ROOT, log, table
from benchmarks.harness.setup import redis_url
from benchmarks.harness.targets import Target, database, running

#: Bounds, in seconds.
CLIENT_OPEN_LIMIT = 300.0
CATCH_UP_LIMIT = 120.0
PUBLISH_LIMIT = 300.0
POSITION_LIMIT = 60.0


async def _child(module: str, *args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    from tests.servers import base_env

    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=ROOT,
        env=base_env(**env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        limit=64 * 1024 * 1024,
    )


async def _line(proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        raise RuntimeError(f"{proc.pid} exited with {await proc.wait()}")
    return dict(json.loads(line))


async def _command(
    proc: asyncio.subprocess.Process, wait: float, cmd: dict[str, Any]
) -> dict[str, Any]:
    assert proc.stdin is not None
    proc.stdin.write((json.dumps(cmd) + "\n").encode())
    await proc.stdin.drain()
    return await _line(proc, wait)


async def _positioned(client: asyncio.subprocess.Process, streams: int) -> None:
    deadline = time.monotonic() + POSITION_LIMIT
    while True:
        status = await _command(client, 30, {"cmd": "status"})
        if status["positioned"] == streams:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {status['positioned']} of {streams} streams got an event")
        await asyncio.sleep(0.1)


def _kill(proc: asyncio.subprocess.Process | None) -> None:
    if proc is not None and proc.returncode is None:
        proc.kill()


async def _sample_rss(pid_of: Any, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], measure.proc_status(pid_of())["VmRSS"])
        except (OSError, KeyError):
            pass  # between the kill and the restart
        await asyncio.sleep(measure.SAMPLE_INTERVAL)


async def storm(
    target: Target,
    env: dict[str, str],
    streams: int,
    channels: int,
    backoff: str,
    rate: float,
    phases: tuple[float, float, float],
    kind: str = "uvicorn",
) -> dict[str, Any]:
    """One storm on a fresh ``kind`` server; ``phases``: seconds of publishing
    before the kill, while down, and after the restart."""
    from tests.faults.harness import channel_sets
    from tests.servers import spawn_server

    names = [f"news:storm-{uuid.uuid4().hex[:6]}-{i}" for i in range(channels)]
    sets = channel_sets(names, streams)
    before, down, after = phases
    client = publisher = None
    with running(target, env, kind) as server:
        port = server.port
        try:
            config = {"port": port, "clients": sets, "backoff": backoff}
            config["open_timeout"] = CLIENT_OPEN_LIMIT
            # In a file: 10,000 channel sets exceed what one argument may hold.
            spec = Path(server.log).with_suffix(".storm.json")
            spec.write_text(json.dumps(config))
            client = await _child("benchmarks.harness.storm_client", str(spec), env={})
            measure.pin_client(client.pid)
            ready = await _line(client, CLIENT_OPEN_LIMIT + 30)
            if ready["ready"] != streams:
                raise RuntimeError(f"only {ready['ready']} of {streams} streams opened")
            await wait_streams(port, streams, 60)
            rss_before = measure.proc_status(server.proc.pid)["VmRSS"]
            publisher = await _child(
                "benchmarks.harness.storm_publish",
                ",".join(names),
                str(rate),
                str(PUBLISH_LIMIT),
                env=env,
            )
            measure.pin_client(publisher.pid)
            # A client that has seen no event has no Last-Event-ID: it would come
            # back "from now" and rightly miss the downtime. Kill only once every
            # client holds a position.
            await _positioned(client, streams)
            await asyncio.sleep(before)
            os.kill(server.proc.pid, signal.SIGKILL)
            server.proc.wait(10)
            killed_at = time.time()
            await asyncio.sleep(down)
            server.proc = await asyncio.to_thread(
                spawn_server, server.kind, port, server.env, server.log, app=target.app
            )
            restarted_at = time.time()
            measure.pin_server(server.proc.pid)
            peak = [0]
            stop = asyncio.Event()
            sampler = asyncio.create_task(_sample_rss(lambda: server.proc.pid, peak, stop))
            await asyncio.sleep(after)
            publisher.send_signal(signal.SIGTERM)
            published = await _line(publisher, PUBLISH_LIMIT)
            published_at = time.time()
            await publisher.wait()
            heads = published["heads"]
            finish = {"cmd": "finish", "heads": heads, "timeout": CATCH_UP_LIMIT}
            result = await _command(client, CATCH_UP_LIMIT + 60, finish)
            stop.set()
            await sampler
            await client.wait()
            stats = json.loads(await http_request(port, "GET", "/test/stats/"))
            rss_after = measure.proc_status(server.proc.pid)["VmRSS"]
        finally:
            _kill(client)
            _kill(publisher)
            Path(server.log).with_suffix(".storm.json").unlink(missing_ok=True)
        problems = measure.log_problems(server.output())
    last = result["last_caught_at"]
    return {
        **result,
        "target": target.key,
        "label": target.label,
        "backoff": backoff,
        "streams": streams,
        "channels": channels,
        "channel_sets": len({tuple(s) for s in sets}),
        "published": sum(heads.values()),
        "publish_failed": published["failed"],
        "downtime_s": restarted_at - killed_at,
        "caught_up_after_restart_s": last - restarted_at if last else float("nan"),
        "caught_up_after_last_publish_s": last - published_at if last else float("nan"),
        "store_reads": stats.get("store_reads"),
        "overflow": result["closes"].get("overflow", 0),
        "rss_before_mb": rss_before / 1024,
        "rss_peak_mb": peak[0] / 1024,
        "rss_after_mb": rss_after / 1024,
        "server_log_problems": problems,
    }


async def run(
    targets: list[Target],
    sizes: list[int],
    backoffs: list[str],
    *,
    channels: int,
    rate: float,
    phases: tuple[float, float, float],
    kinds: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every storm; ``kinds``: the server kinds to run, with their labels
    (named in the rows once there is more than one)."""
    kinds = kinds or {"uvicorn": "uvicorn"}
    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        url = redis_url(stack)
        for target in targets:
            if not target.resumes:
                log(f"resume-storm: {target.label} skipped (no history to resume from)")
                continue
            for kind, streams, backoff in (
                (k, n, b) for k in kinds for n in sizes for b in backoffs
            ):
                label = f"{target.label}, {kinds[kind]}" if len(kinds) > 1 else target.label
                log(f"resume-storm: {label}, {streams} streams, {backoff} ...")
                with database(target, "redis", url) as env:
                    if target.ours:
                        # Lifespan on, as deployed: the hub connects to Redis
                        # before the restarted server takes the storm (Django's
                        # own application, the peer's, refuses lifespan).
                        env["SSE_TEST_LIFESPAN"] = "on"
                    try:
                        r = await storm(target, env, streams, channels, backoff, rate, phases, kind)
                    except Exception as exc:
                        log(f"  failed: {exc!r}")
                        results.append(
                            {
                                "target": target.key,
                                "label": label,
                                "streams": streams,
                                "backoff": backoff,
                                "error": repr(exc)[:300],
                            }
                        )
                        continue
                r["label"] = label
                results.append(r)
                log(
                    f"  caught up {r['caught_up']}/{streams} in "
                    f"{r['caught_up_after_restart_s']:.1f}s after the restart; lost "
                    f"{r['lost']}, duplicated {r['duplicated']}, reads {r['store_reads']}"
                )
    return results


def markdown(results: list[dict[str, Any]]) -> list[str]:
    header = [
        "library",
        "streams",
        "reconnect",
        "caught up",
        "s after restart",
        "s after last publish",
        "published",
        "lost",
        "duplicated",
        "out of order",
        "store reads",
        "overflow closes",
        "connection attempts",
        "RSS before / peak / after MB",
    ]
    rows: list[list[Any]] = []
    notes: list[str] = []
    for r in results:
        if "error" in r:
            notes.append(f"- {r['label']}, {r['streams']} streams, {r['backoff']}: {r['error']}")
            continue
        rows.append(
            [
                r["label"],
                r["streams"],
                r["backoff"],
                f"{r['caught_up']}/{r['clients']}",
                r["caught_up_after_restart_s"],
                r["caught_up_after_last_publish_s"],
                r["published"],
                r["lost"],
                r["duplicated"],
                r["out_of_order"],
                r["store_reads"] if r["store_reads"] is not None else "n/a",
                r["overflow"],
                r["reconnects"],
                f"{r['rss_before_mb']:.0f} / {r['rss_peak_mb']:.0f} / {r['rss_after_mb']:.0f}",
            ]
        )
        if r["server_log_problems"]:
            notes.append(
                f"- {r['label']}, {r['backoff']}: server log: {r['server_log_problems'][:2]}"
            )
        if r["publish_failed"]:
            notes.append(f"- {r['label']}, {r['backoff']}: {r['publish_failed']} publishes failed")
    return [*table(header, rows), *(["", *notes] if notes else [])]
