"""django_sse against django-eventstream, side by side, on this machine.

Run from the repository root (``make bench-compare`` does the first)::

    .venv/bin/pip install -e ".[dev,bench]"
    .venv/bin/python benchmarks/compare.py
    .venv/bin/python benchmarks/compare.py --quick

Each library serves a minimal app under uvicorn, one process per scenario:
django_sse through the ASGI fast path (``tests.asgi``), django_sse through the
plain Django view (``SSE_TEST_DOOR=view``) and django-eventstream 5.3 with its
in-process listener (``benchmarks/peer/``). All three publish from inside the
server (``POST /test/publish/``), with the in-memory channel layer on the
django_sse side; the payload carries the client's ``time.time()``. The load
client is ``benchmarks/fanout.py``'s, in this process. The table and a plot
are written to ``docs/benchmarks/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _common, fanout  # noqa: E402

OUT = ROOT / "docs" / "benchmarks"
SEND_EVENTS = 1000
SEND_WARMUP = 50
SEND_LIMIT = 300.0
#: The Django view holds one thread per stream: it is not run beyond this.
VIEW_MAX_STREAMS = 3000


@dataclass
class Library:
    key: str
    label: str
    app: str
    env: dict[str, str]
    #: Larger scenarios are skipped, for ``skip_reason``.
    max_streams: int = 10**9
    skip_reason: str = ""


PEER_APP = "benchmarks.peer.asgi:application"


def libraries(db: str, peer_db: str) -> list[Library]:
    ours = {"SSE_TEST_LAYER": "memory", "SSE_TEST_DB": db}
    peer = {"DJANGO_SETTINGS_MODULE": "benchmarks.peer.settings", "PEER_DB": peer_db}
    return [
        Library("fast", "django_sse (fast path)", "tests.asgi:application", ours),
        Library(
            "view",
            "django_sse (view)",
            "tests.asgi:application",
            {**ours, "SSE_TEST_DOOR": "view"},
            VIEW_MAX_STREAMS,
            "one thread per stream",
        ),
        Library("peer", "django-eventstream 5.3.4", PEER_APP, peer),
        # Without storage the peer drops what exceeds its 10 pending events per
        # stream; with it, a stream that overflows re-reads the database.
        Library(
            "peer-db",
            "django-eventstream, DjangoModelStorage",
            PEER_APP,
            {**peer, "PEER_STORAGE": "1"},
            0,
            "burst only",
        ),
    ]


def migrate(env: dict[str, str]) -> None:
    """``manage.py migrate`` with ``env``'s settings and database (bounded)."""
    full = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env}
    full["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"]
    done = subprocess.run(
        command, cwd=ROOT, env=full, timeout=SEND_LIMIT, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"migrate failed:\n{done.stdout}{done.stderr}")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- send_event cost (one child process per library) ----------------------------


def send_worker(key: str, events: int) -> dict[str, Any]:
    """Time ``send_event`` with the library's database storage and no subscribers."""
    import django

    django.setup()
    if key == "peer":
        from django_eventstream import send_event  # type: ignore[import-untyped]
    else:
        from django_sse import send_event

    times: list[float] = []
    for i in range(-SEND_WARMUP, events):
        started = time.perf_counter()
        send_event("news:cost", "bench", {"n": i})
        if i >= 0:
            times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": statistics.median(times), "p95_ms": fanout.percentile(times, 95)}


def send_cost(lib: Library, tmp: Path, events: int) -> dict[str, Any]:
    db = str(tmp / f"send-{lib.key}.sqlite3")
    env = {**lib.env, "SSE_TEST_DB": db, "PEER_DB": db, "PEER_STORAGE": "1"}
    migrate(env)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env}
    env["PYTHONPATH"] = str(ROOT)
    worker = [sys.executable, __file__, "--send-worker", lib.key, str(events)]
    done = subprocess.run(
        worker, cwd=ROOT, env=env, check=True, timeout=SEND_LIMIT, capture_output=True, text=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# -- scenarios ------------------------------------------------------------------


def context(lib: Library, concurrency: int) -> fanout.Context:
    env = dict(lib.env)
    return fanout.Context(
        "uvicorn", "memory", env, fanout.Publisher("memory"), concurrency, False, app=lib.app
    )


async def attempt(
    result: dict[str, Any], what: str, scenario: Awaitable[dict[str, Any]]
) -> dict[str, Any] | None:
    """Run one scenario; a failure (a bound exceeded) is recorded, not fatal."""
    try:
        return await scenario
    except Exception as exc:
        why = "a bounded wait ran out" if isinstance(exc, TimeoutError) else repr(exc)
        result["errors"].append(f"{what}: {why}")
        progress(f"  failed: {why}")
        return None


async def run_library(lib: Library, args: argparse.Namespace) -> dict[str, Any]:
    ctx = context(lib, args.connect_concurrency)
    result: dict[str, Any] = {"fanout": {}, "idle": {}, "burst": None, "errors": []}
    for k in args.sizes:
        if k > lib.max_streams:
            progress(f"{lib.label}: fan-out {k} skipped ({lib.skip_reason})")
            continue
        progress(f"{lib.label}: fan-out to {k} x {args.rounds} rounds ...")
        r = await attempt(result, f"fan-out {k}", fanout.fanout(ctx, k, args.rounds))
        if r is None:
            continue
        result["fanout"][k] = r
        progress(
            f"  {r['delivered']}/{r['expected']} delivered, p95 {r['p95_ms']:.1f} ms, "
            f"{r['kb_per_stream']:.1f} KB/stream, threads {r['server_threads_peak']}"
        )
    for k in args.idle:
        if k > lib.max_streams:
            progress(f"{lib.label}: idle {k} skipped ({lib.skip_reason})")
            continue
        if k in result["fanout"]:
            result["idle"][k] = result["fanout"][k]
            continue
        progress(f"{lib.label}: {k} idle streams ...")
        r = await attempt(result, f"idle {k}", fanout.fanout(ctx, k, 1))
        if r is not None:
            result["idle"][k] = r
    progress(f"{lib.label}: burst of {args.burst_events} to {args.burst_subscribers} ...")
    result["burst"] = await attempt(
        result, "burst", fanout.burst(ctx, args.burst_subscribers, args.burst_events)
    )
    return result


# -- report ---------------------------------------------------------------------


def ratio(peer: float | None, ours: float | None) -> str:
    if not ours or peer is None or math.isnan(ours) or math.isnan(peer):
        return "n/a"
    return f"{peer / ours:.1f}x"


Getter = Callable[[dict[str, Any]], "float | None"]


def fanout_value(k: int, get: Callable[[dict[str, Any]], float]) -> Getter:
    return lambda r: get(r["fanout"][k]) if k in r["fanout"] else None


def idle_value(k: int, key: str) -> Getter:
    return lambda r: float(r["idle"][k][key]) if k in r["idle"] else None


def burst_value(key: str) -> Getter:
    return lambda r: float(r["burst"][key]) if r.get("burst") else None


def table(results: dict[str, dict[str, Any]], libs: list[Library], meta: dict[str, Any]) -> str:
    rows: list[str] = []

    def row(name: str, get: Getter, digits: int = 1, compare: bool = True) -> None:
        values = {lib.key: get(results[lib.key]) for lib in libs}
        cells = [fanout.fmt(v, digits) if v is not None else "-" for v in values.values()]
        rate = ratio(values.get("peer"), values.get("fast")) if compare else ""
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {rate} |")

    for k in meta["sizes"]:
        for p in ("p50", "p95", "p99"):
            row(f"fan-out {k}: {p} ms", fanout_value(k, lambda f, p=p: f[f"{p}_ms"]))
        row(
            f"fan-out {k}: delivered %",
            fanout_value(k, lambda f: 100.0 * f["delivered"] / max(f["expected"], 1)),
            compare=False,
        )
        row(
            f"fan-out {k}: load client busy max %",
            fanout_value(k, lambda f: 100.0 * f["client_busy_max"]),
            0,
            compare=False,
        )
    burst = meta["burst"]
    row(f"burst {burst}: complete subscribers", burst_value("complete_subscribers"), 0, False)
    row(f"burst {burst}: fewest events received", burst_value("received_min"), 0, False)
    row(f"burst {burst}: most events received", burst_value("received_max"), 0, False)
    row(f"burst {burst}: in order, no duplicates (1 = yes)", burst_value("all_in_order"), 0, False)
    row(f"burst {burst}: total s", burst_value("total_s"), 2, False)
    for k in meta["idle"]:
        row(f"idle {k}: KB/stream", idle_value(k, "kb_per_stream"))
        row(f"idle {k}: server threads", idle_value(k, "server_threads_peak"), 0)
    row(
        "send_event p50 ms (SQLite storage, no subscribers)",
        lambda r: r["send"]["p50_ms"] if "send" in r else None,
        3,
    )
    head = [
        f"{meta['title']}: uvicorn, one server process per scenario, {meta['cpus']} CPUs, "
        f"Python {meta['python']}, {meta['date']}, {meta['rounds']} rounds per fan-out size.",
        "",
        f"Command: `{meta['command']}`",
        "",
        "| | " + " | ".join(lib.label for lib in libs) + " | django-eventstream / fast path |",
        "|---|" + "---:|" * (len(libs) + 1),
    ]
    failures = [f"- {lib.label}, {e}" for lib in libs for e in results[lib.key]["errors"]]
    if failures:
        rows += ["", "Scenarios that did not finish within their bounds:", "", *failures]
    return "\n".join(head + rows) + "\n"


def plot(results: dict[str, dict[str, Any]], libs: list[Library], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, mem) = plt.subplots(1, 2, figsize=(10, 4))
    for lib in (lib for lib in libs if results[lib.key]["fanout"]):
        fan = results[lib.key]["fanout"]
        ks = sorted(fan)
        lat.plot(ks, [fan[k]["p95_ms"] for k in ks], marker="o", label=lib.label)
        idle = results[lib.key]["idle"]
        ks = sorted(idle)
        mem.plot(ks, [idle[k]["kb_per_stream"] for k in ks], marker="o", label=lib.label)
    lat.set(xscale="log", yscale="log", xlabel="subscribers", ylabel="p95 fan-out latency (ms)")
    mem.set(xscale="log", xlabel="open streams", ylabel="server RSS per stream (KB)")
    lat.legend(fontsize="small")
    lat.grid(True, alpha=0.3)
    mem.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- main -----------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sizes up to 1,000 only")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--burst-subscribers", type=int, default=100)
    parser.add_argument("--burst-events", type=int, default=1000)
    parser.add_argument("--connect-concurrency", type=int, default=64)
    parser.add_argument(
        "--libraries", default="fast,view,peer,peer-db", help="comma-separated keys"
    )
    parser.add_argument("--out", type=Path, default=OUT, help="where the table and plot go")
    args = parser.parse_args(argv)
    args.sizes = [100, 1000] if args.quick else [100, 1000, 3000, 10000]
    args.idle = [1000] if args.quick else [1000, 5000, 10000]
    args.rounds = min(args.rounds, 3) if args.quick else args.rounds
    args.keys = [k for k in args.libraries.split(",") if k]
    return args


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    if raw[:1] == ["--send-worker"]:
        print(json.dumps(send_worker(raw[1], int(raw[2]))))
        return 0
    args = parse_args(raw)
    _common.stop_on_sigterm()
    fanout.raise_nofile(max(args.sizes + args.idle))
    started = time.time()
    import asyncio

    with tempfile.TemporaryDirectory(prefix="sse-compare-") as name:
        tmp = Path(name)
        libs = [
            lib
            for lib in libraries(str(tmp / "ours.sqlite3"), str(tmp / "peer.sqlite3"))
            if lib.key in args.keys
        ]
        results: dict[str, dict[str, Any]] = {}
        for lib in libs:
            migrate(lib.env)
            results[lib.key] = asyncio.run(run_library(lib, args))
            if lib.key != "peer-db":  # the peer's cost row already uses its storage
                progress(f"{lib.label}: send_event cost ...")
                try:
                    results[lib.key]["send"] = send_cost(lib, tmp, SEND_EVENTS)
                except (subprocess.SubprocessError, RuntimeError, ValueError) as exc:
                    results[lib.key]["errors"].append(f"send_event cost: {exc!r}")
    meta = {
        "title": "Quick run (sizes up to 1,000)" if args.quick else "Full run",
        "sizes": args.sizes,
        "idle": args.idle,
        "burst": f"{args.burst_events} events to {args.burst_subscribers}",
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join([".venv/bin/python", "benchmarks/compare.py", *raw]),
    }
    text = table(results, libs, meta)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.md").write_text(text)
    plot(results, libs, args.out / "compare.png")
    progress(f"wrote {args.out / 'compare.md'} and compare.png in {time.time() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
