"""The benchmark harness: every scenario, every library, one invocation.

Run from the repository root (``make bench`` runs the default)::

    .venv/bin/python benchmarks/bench.py                      # fan-out, burst, idle memory
    .venv/bin/python benchmarks/bench.py --scenario fanout --targets fast,floor --sizes 100,1000
    .venv/bin/python benchmarks/bench.py --server uvicorn,uvicorn-httptools,daphne
    .venv/bin/python benchmarks/bench.py --scenario resume-storm --storm-streams 1000
    .venv/bin/python benchmarks/bench.py --scenario multi-process --mp-streams 2000

Scenarios (``--scenario``, comma-separated):

* ``fanout``: K streams on one channel, one stamped event per round;
  p50/p95/p99 delivery latency and server CPU per delivery.
* ``burst``: 1,000 events back to back to 100 subscribers; complete, in order.
* ``idle-memory``: K idle streams; server RSS per stream and threads.
* ``send-event``: ``send_event`` called from a sync view inside a running
  uvicorn (``benchmarks.live``), per library, with its SQLite storage.
* ``publish-cost``: the same call in a plain process, per database and journal
  mode (SQLite, PostgreSQL), and ``asend_event``.
* ``resume``: 1,000 events published while no client is connected, then one
  resuming request.
* ``resume-storm``: N streams, the server killed and restarted while events
  are published, every client resuming (``benchmarks.harness.storm``).
* ``multi-process``: 2 and 4 server processes (``--server``'s first kind)
  behind nginx sharing one Redis, 20,000 streams in total from several
  load-client processes (``benchmarks.harness.multiprocess``).

Targets (``--targets``): ``fast``, ``view``, ``floor``, ``asgi``, ``peer``, ``peer-db``
(see :mod:`benchmarks.harness.targets`). Server kinds (``--server``,
comma-separated; fan-out, burst and idle memory run every target under each):
``uvicorn`` (h11, asyncio), ``uvicorn-httptools`` (httptools, uvloop: what
``uvicorn[standard]`` gives), ``daphne``; the floor runs once per event loop
and each row's "/ floor" divides by the floor on its own loop. Servers run on the first core and the
load client on the second when there are two. Each scenario's markdown table,
headed by the command, goes to ``docs/benchmarks/<scenario>.md`` (``--out``),
which docs/benchmarks.rst includes; ``--json`` keeps everything measured.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import measure, report  # noqa: E402
from benchmarks.harness.report import OUT, fmt, log  # noqa: E402
from benchmarks.harness.setup import stop_on_sigterm  # noqa: E402
from benchmarks.harness.targets import Target, database, parse  # noqa: E402
from tests.servers import SERVER_KINDS  # noqa: E402

SCENARIOS = (
    "fanout",
    "burst",
    "idle-memory",
    "send-event",
    "publish-cost",
    "resume",
    "resume-storm",
    "multi-process",
)
DEFAULT_SCENARIOS = "fanout,burst,idle-memory"


# -- fan-out, burst, idle memory (the load client is this process) --------------


async def attempt(errors: list[str], what: str, scenario: Any) -> dict[str, Any] | None:
    """Run one scenario; a failure (a bound exceeded) is recorded, not fatal."""
    try:
        result: dict[str, Any] = await scenario
        return result
    except Exception as exc:
        why = "a bounded wait ran out" if isinstance(exc, TimeoutError) else repr(exc)[:300]
        errors.append(f"{what}: {why}")
        log(f"  failed: {why}")
        return None


#: How a server kind reads in a table row.
SERVER_LABELS = {
    "uvicorn": "uvicorn h11",
    "uvicorn-httptools": "uvicorn httptools+uvloop",
    "daphne": "daphne",
}


@dataclass
class Run:
    """One target under one server kind: a row of the delivery tables. The
    floor runs once per event loop, not once per server kind."""

    key: str
    target: Target
    server: str
    label: str
    #: The key of the floor run on the same event loop.
    floor: str


def runs(targets: list[Target], servers: list[str]) -> list[Run]:
    from tests.servers import server_loop

    out: dict[str, Run] = {}
    for server in servers:
        loop = server_loop(server)
        for target in targets:
            if target.key == "floor":
                key = f"floor@{loop}"
                label = "floor (do-nothing asyncio)" if loop == "asyncio" else f"floor ({loop})"
            else:
                key = f"{target.key}@{server}"
                label = f"{target.label}, {SERVER_LABELS.get(server, server)}"
            out.setdefault(key, Run(key, target, server, label, f"floor@{loop}"))
    return list(out.values())


async def delivery(plan: list[Run], args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.harness.fanout import Context, Publisher, burst, fanout

    out: dict[str, Any] = {}
    for run in plan:
        target = run.target
        res: dict[str, Any] = {"fanout": {}, "idle": {}, "burst": None, "errors": []}
        out[run.key] = res
        with database(target) as env:
            ctx = Context(target, env, Publisher("memory"), args.connect_concurrency, run.server)
            if "fanout" in args.scenarios:
                for k in args.sizes:
                    if k > target.max_streams:
                        log(f"{run.label}: fan-out {k} skipped ({target.skip_reason})")
                        continue
                    log(f"{run.label}: fan-out to {k} x {args.rounds} rounds ...")
                    r = await attempt(res["errors"], f"fan-out {k}", fanout(ctx, k, args.rounds))
                    if r is not None:
                        res["fanout"][k] = r
                        log(
                            f"  {r['delivered']}/{r['expected']}, p95 {r['p95_ms']:.1f} ms, "
                            f"p99 {r['p99_ms']:.1f} ms, "
                            f"{r['server_us_per_delivery']:.1f} us/delivery"
                        )
            if "idle-memory" in args.scenarios:
                for k in args.idle:
                    if k > target.max_streams:
                        log(f"{run.label}: idle {k} skipped ({target.skip_reason})")
                        continue
                    if k in res["fanout"]:
                        res["idle"][k] = res["fanout"][k]
                        continue
                    log(f"{run.label}: {k} idle streams ...")
                    r = await attempt(res["errors"], f"idle {k}", fanout(ctx, k, 1))
                    if r is not None:
                        res["idle"][k] = r
            if "burst" in args.scenarios:
                n, subs = args.burst_events, args.burst_subscribers
                log(f"{run.label}: burst of {n} to {subs} ...")
                res["burst"] = await attempt(res["errors"], "burst", burst(ctx, subs, n))
    return out


def ratio(value: float | None, floor: float | None) -> str:
    if value is None or not floor or floor != floor or value != value:
        return "-"
    return f"{value / floor:.1f}x"


def delivery_tables(
    results: dict[str, Any], plan: list[Run], args: argparse.Namespace
) -> dict[str, list[str]]:
    def floor(run: Run, kind: str, k: int) -> Any:
        return results.get(run.floor, {}).get(kind, {}).get(k)

    tables: dict[str, list[str]] = {}
    if "fanout" in args.scenarios:
        rows: list[list[Any]] = []
        for k in args.sizes:
            for t in plan:
                r = results[t.key]["fanout"].get(k)
                if r is None:
                    continue
                base = floor(t, "fanout", k)
                rows.append(
                    [
                        k,
                        t.label,
                        f"{r['delivered']}/{r['expected']}",
                        r["p50_ms"],
                        r["p95_ms"],
                        r["p99_ms"],
                        r["max_ms"],
                        ratio(r["p95_ms"], base and base["p95_ms"]),
                        ratio(r["p99_ms"], base and base["p99_ms"]),
                        r["server_us_per_delivery"],
                        ratio(r["server_us_per_delivery"], base and base["server_us_per_delivery"]),
                        f"{r['client_busy_max'] * 100:.0f}%",
                    ]
                )
        header = [
            "streams", "library", "delivered", "p50 ms", "p95 ms", "p99 ms", "max ms",
            "p95 / floor", "p99 / floor", "server CPU µs per delivery", "CPU / floor",
            "load client busy max",
        ]  # fmt: skip
        tables["fanout"] = [
            f"Fan-out: K streams on one channel, {args.rounds} events per size, each "
            'published from inside the server (`POST /test/publish/`). The "/ floor" '
            "columns divide by the floor on the same event loop (asyncio, or uvloop for "
            "httptools+uvloop).",
            "",
            *report.table(header, rows),
        ]
    if "idle-memory" in args.scenarios:
        rows = []
        for k in args.idle:
            for t in plan:
                r = results[t.key]["idle"].get(k)
                base = floor(t, "idle", k)
                if r is not None:
                    rows.append(
                        [
                            k,
                            t.label,
                            r["connected"],
                            r["kb_per_stream"],
                            ratio(r["kb_per_stream"], base and base["kb_per_stream"]),
                            f"{r['server_threads_before']}/{r['server_threads_peak']}",
                            r["server_rss_peak_mb"],
                        ]
                    )
        header = ["streams", "library", "connected", "KB per stream", "KB / floor",
                  "threads before/peak", "server RSS peak MB"]  # fmt: skip
        tables["idle-memory"] = [
            "Idle streams: server RSS with K streams open minus before, per stream.",
            "",
            *report.table(header, rows),
        ]
    if "burst" in args.scenarios:
        rows = []
        for t in plan:
            b = results[t.key]["burst"]
            if b is None:
                continue
            rows.append(
                [
                    t.label,
                    f"{b['complete_subscribers']}/{b['connected']}",
                    f"{b['received_min']}/{b['received_max']}",
                    "yes" if b["all_in_order"] else "NO",
                    b["closed_by_server"],
                    b["total_s"],
                    b["server_cpu_s"],
                ]
            )
        header = ["library", "complete subscribers", "received min/max", "in order, no duplicates",
                  "closed by server", "total s", "server CPU s"]  # fmt: skip
        tables["burst"] = [
            f"Burst: {args.burst_events} events published back to back (one request) to "
            f"{args.burst_subscribers} subscribers.",
            "",
            *report.table(header, rows, 2),
        ]
    errors = [f"- {t.label}, {e}" for t in plan for e in results[t.key]["errors"]]
    if errors:
        for name in tables:
            tables[name] += ["", "Scenarios that did not finish within their bounds:", "", *errors]
    return tables


def plot(results: dict[str, Any], targets: list[Run], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        log("matplotlib is not installed (the bench extra): no plot")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, mem) = plt.subplots(1, 2, figsize=(11, 5.5))
    # One colour per library, one line style per server: a dozen rows stay
    # told apart (the default cycle repeats its colours after ten).
    libraries = dict.fromkeys(t.target.key for t in targets)
    servers = dict.fromkeys(t.server for t in targets)
    colours = {key: f"C{i}" for i, key in enumerate(libraries)}
    styles = dict(zip(servers, ("-", "--", ":", "-."), strict=False))
    for t in targets:
        fan, idle = results[t.key]["fanout"], results[t.key]["idle"]
        style = styles.get(t.server, "-")
        look = {"marker": "o", "color": colours[t.target.key], "linestyle": style}
        if fan:
            ks = sorted(fan)
            lat.plot(ks, [fan[k]["p95_ms"] for k in ks], label=t.label, **look)
        if idle:
            ks = sorted(idle)
            mem.plot(ks, [idle[k]["kb_per_stream"] for k in ks], label=t.label, **look)
    lat.set(xscale="log", yscale="log", xlabel="subscribers", ylabel="p95 fan-out latency (ms)")
    mem.set(xscale="log", xlabel="open streams", ylabel="server RSS per stream (KB)")
    handles, labels = lat.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize="small")
    for ax in (lat, mem):
        ax.grid(True, alpha=0.3)
    fig.tight_layout(rect=(0, 0.22, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- main -------------------------------------------------------------------------


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--scenario", default=DEFAULT_SCENARIOS, help=", ".join(SCENARIOS))
    parser.add_argument(
        "--targets", default="fast,floor,peer", help="fast,view,floor,asgi,peer,peer-db"
    )
    parser.add_argument(
        "--server",
        default="uvicorn",
        help="server kinds, comma-separated: " + ", ".join(SERVER_KINDS),
    )
    parser.add_argument("--sizes", type=ints, default=[100, 1000, 3000], help="fan-out sizes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle", type=ints, default=[1000], help="idle-memory sizes")
    parser.add_argument("--burst-subscribers", type=int, default=100)
    parser.add_argument("--burst-events", type=int, default=1000)
    parser.add_argument("--connect-concurrency", type=int, default=64)
    parser.add_argument("--send-events", type=int, default=500, help="send-event timed calls")
    parser.add_argument("--events", type=int, default=2000, help="publish-cost calls")
    parser.add_argument("--batch-events", type=int, default=10000, help="publish-cost batch size")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only (send-event too)")
    parser.add_argument("--resume-events", type=int, default=1000)
    parser.add_argument("--resume-rounds", type=int, default=5)
    parser.add_argument("--resume-layers", default="redis,memory")
    parser.add_argument("--storm-streams", type=ints, default=[10000])
    parser.add_argument("--storm-channels", type=int, default=20)
    parser.add_argument("--storm-backoff", default="at-once,jittered")
    parser.add_argument("--storm-rate", type=float, default=1.0, help="events/s per channel")
    parser.add_argument(
        "--storm-phases", default="3,3,2", help="seconds publishing before kill, down, after"
    )
    parser.add_argument("--storm-targets", default="fast,peer-db")
    parser.add_argument("--mp-processes", type=ints, default=[2, 4])
    parser.add_argument("--mp-streams", type=int, default=20000, help="streams in total")
    parser.add_argument("--mp-rounds", type=int, default=10)
    parser.add_argument(
        "--mp-clients",
        type=int,
        default=0,
        help="load-client processes (default: as few as fit the open-file limit, at least 2)",
    )
    parser.add_argument("--out", type=Path, default=OUT, help="where the tables go")
    parser.add_argument("--json", type=Path, help="also write every result as JSON")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenario.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {SCENARIOS}")
    args.servers = [x.strip() for x in args.server.split(",") if x.strip()]
    if not args.servers or set(args.servers) - set(SERVER_KINDS):
        parser.error(f"--server takes one or more of {', '.join(SERVER_KINDS)}")
    # The scenarios that run one server kind run the first.
    args.server = args.servers[0]
    args.resume_layers = [x for x in args.resume_layers.split(",") if x]
    args.storm_backoff = [x for x in args.storm_backoff.split(",") if x]
    if set(args.storm_backoff) - {"at-once", "jittered"}:
        parser.error("--storm-backoff takes at-once and/or jittered")
    phases = [float(x) for x in args.storm_phases.split(",")]
    if len(phases) != 3:
        parser.error("--storm-phases takes three numbers")
    args.storm_phases = tuple(phases)
    if min([args.rounds, *args.sizes, *args.idle, *args.storm_streams, 1]) < 1:
        parser.error("sizes and rounds must be positive")
    return args


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    targets = parse(args.targets)
    everything: dict[str, Any] = {}

    def write(name: str, title: str, body: list[str]) -> None:
        path = report.write(args.out, name, title, argv, body)
        print("\n".join(body) + "\n", flush=True)
        log(f"wrote {path}")

    if {"fanout", "burst", "idle-memory"} & set(args.scenarios):
        plan = runs(targets, args.servers)
        results = asyncio.run(delivery(plan, args))
        everything["delivery"] = results
        kinds = ", ".join(SERVER_LABELS[s] for s in args.servers)
        for name, body in delivery_tables(results, plan, args).items():
            write(name, f"{name}: {kinds}, one server process per scenario", body)
        if "fanout" in args.scenarios or "idle-memory" in args.scenarios:
            args.out.mkdir(parents=True, exist_ok=True)
            plot(results, plan, args.out / "fanout.png")
    steps: dict[str, Callable[[], tuple[str, list[str], Any]]] = {
        "send-event": lambda: send_event(args),
        "publish-cost": lambda: publish_cost(args),
        "resume": lambda: resume(args),
        "resume-storm": lambda: resume_storm(args),
        "multi-process": lambda: multi_process(args),
    }
    for name, step in steps.items():
        if name in args.scenarios:
            title, body, raw = step()
            everything[name] = raw
            write(name, title, body)
    return everything


def send_event(args: argparse.Namespace) -> tuple[str, list[str], Any]:
    from benchmarks.harness import live

    results = live.run(parse(args.targets), args.send_events, postgres=not args.no_postgres)
    return (
        "send-event: `send_event` from a sync view in a running uvicorn",
        live.markdown(results, args.send_events),
        results,
    )


def publish_cost(args: argparse.Namespace) -> tuple[str, list[str], Any]:
    import tempfile

    from benchmarks.harness import history

    with tempfile.TemporaryDirectory(prefix="sse-publish-") as tmp:
        with history.postgres_database(args.no_postgres) as (pg, reason):
            if pg is None:
                log(f"PostgreSQL skipped: {reason}")
            results = history.run_publish(args, Path(tmp), pg, reason)
    title = "publish-cost: `send_event` / `asend_event` in a plain process (no server)"
    return title, history.publish_table(results, args.events), results


def resume(args: argparse.Namespace) -> tuple[str, list[str], Any]:
    import tempfile

    from benchmarks.harness import history

    args.rounds_saved, args.rounds = args.rounds, args.resume_rounds
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="sse-resume-") as tmp:
        results = history.run_resume(args, Path(tmp), stack)
    args.rounds = args.rounds_saved
    return (
        "resume: one client resuming from the store",
        history.resume_table(results, args.resume_events),
        results,
    )


def resume_storm(args: argparse.Namespace) -> tuple[str, list[str], Any]:
    from benchmarks.harness import storm

    results = asyncio.run(
        storm.run(
            parse(args.storm_targets),
            args.storm_streams,
            args.storm_backoff,
            channels=args.storm_channels,
            rate=args.storm_rate,
            phases=args.storm_phases,
            kinds={kind: SERVER_LABELS[kind] for kind in args.servers},
        )
    )
    before, down, after = args.storm_phases
    intro = [
        f"Resume storm: streams over {args.storm_channels} channels (every other stream on two), "
        f"{fmt(args.storm_rate)} events/s per channel published from another process for "
        f"{fmt(before)} s, the server killed -9, {fmt(down)} s down, started again, "
        f"{fmt(after)} s more; every client resumes with its `Last-Event-ID`.",
        "",
    ]
    return (
        "resume-storm: the server killed and restarted under load",
        intro + storm.markdown(results),
        results,
    )


def multi_process(args: argparse.Namespace) -> tuple[str, list[str], Any]:
    from benchmarks.harness import multiprocess

    results = asyncio.run(
        multiprocess.run(
            args.mp_processes,
            args.mp_streams,
            args.mp_rounds,
            args.connect_concurrency,
            kind=args.server,
            clients=args.mp_clients,
        )
    )
    return (
        f"multi-process: {SERVER_LABELS[args.server]} processes behind nginx, one Redis",
        multiprocess.markdown(results, args.mp_streams, args.mp_rounds),
        results,
    )


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    args = parse_args(raw)
    stop_on_sigterm()
    # One descriptor per stream in the load client and in the server; the
    # multi-process scenario spreads its streams over processes and checks its own.
    measure.raise_nofile(
        max([*args.sizes, *args.idle, *args.storm_streams, args.burst_subscribers])
    )
    # This process is the load client of the fan-out scenarios: the second core.
    measure.pin_client()
    started = time.time()
    everything = run(args, raw)
    if args.json:
        report.write_json(args.json, everything)
    log(f"done in {time.time() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
