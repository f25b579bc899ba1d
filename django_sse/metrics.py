"""Prometheus metrics, named ``django_sse_*``, off unless ``SSE_METRICS = True``.

Nothing of ``prometheus_client`` is imported while the setting is off: every
call site asks :func:`get` for the current figures and, metrics off, gets
:data:`OFF`, whose methods do nothing. On, the figures live in
``prometheus_client``'s default registry, which is what django-prometheus's
``/metrics`` view and :func:`django_sse.metrics_view.metrics` export; with
``PROMETHEUS_MULTIPROC_DIR`` set, every worker process writes its own files
and a scrape of any worker sums them (gauges per :data:`FIGURES`).

Labelled children of the figures counted per event are bound once, when the
figures are made: a delivery costs one ``inc`` of a bound counter, never a
label lookup. A new figure is one line in :data:`FIGURES`, counted with
``get().inc(name, **labels)``, ``get().set(...)`` or ``get().observe(...)``.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from .conf import conf

logger = logging.getLogger("django_sse")

PREFIX = "django_sse_"
#: The ``door`` label: Django's view, or the ASGI fast path.
DOORS = ("view", "asgi")
#: The close reason of a stream its client ended.
CLIENT_GONE = "client gone"
#: Close reasons bound in advance (any other is bound on first use).
CLOSE_REASONS = (
    CLIENT_GONE,
    "overflow",
    "revoked",
    "max age",
    "shutdown",
    "unavailable",
    "session expired",
    "session ended",
    "session changed",
    "password changed",
    "user deleted",
)
#: Seconds; publishes take about a millisecond on a database store.
PUBLISH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
#: Seconds a stream stayed open.
DURATION_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0)


@dataclass(frozen=True)
class Figure:
    """One metric: its kind, name (without :data:`PREFIX`), help and labels.

    ``mode`` is a gauge's ``multiprocess_mode``: ``livesum`` adds up the
    worker processes that are alive, ``livemax`` takes the largest."""

    kind: str
    name: str
    help: str
    labels: tuple[str, ...] = ()
    mode: str = "livesum"
    buckets: tuple[float, ...] = field(default=())


FIGURES: tuple[Figure, ...] = (
    Figure("gauge", "streams_open", "Streams open now, by door.", ("door",)),
    Figure("counter", "streams_opened", "Streams opened, by door.", ("door",)),
    Figure(
        "counter", "streams_closed", "Streams closed, by door and close reason.", ("door", "reason")
    ),
    Figure(
        "histogram",
        "stream_duration_seconds",
        "Seconds a stream stayed open.",
        buckets=DURATION_BUCKETS,
    ),
    Figure("gauge", "channels", "Channels that open streams of this process listen to."),
    Figure("counter", "events_published", "Events published by this process."),
    Figure(
        "histogram",
        "publish_duration_seconds",
        "Seconds send_event / asend_event took, storing included.",
        buckets=PUBLISH_BUCKETS,
    ),
    Figure(
        "counter",
        "publish_errors",
        "Publishes that raised: reason store, layer or invalid (bad input).",
        ("reason",),
    ),
    Figure("counter", "deliveries", "Events queued for a stream (one per event and stream)."),
    Figure(
        "counter",
        "resumes",
        "Streams that came back with a last event id: outcome replayed, or reset with "
        "the reset's reason.",
        ("outcome", "reason"),
    ),
    Figure(
        "counter",
        "catchup_streams_behind",
        "Live streams the catch-up poll found behind the store (the layer missed events).",
    ),
    Figure(
        "gauge",
        "catchup_lag_events",
        "Most events any live stream was behind the store at the last catch-up poll.",
        mode="livemax",
    ),
    Figure(
        "counter",
        "layer_errors",
        "Channel layer calls that failed or timed out, by operation and kind.",
        ("operation", "kind"),
    ),
    Figure(
        "counter", "store_errors", "Event store calls that failed, by operation.", ("operation",)
    ),
    Figure(
        "counter",
        "presence_changes",
        "Presence members announced as joined or left by this process, by kind "
        "(join, leave); anonymous streams are not members.",
        ("kind",),
    ),
    Figure(
        "counter",
        "inbox_changes",
        "Inbox changes committed by this process, one per user and change, by action "
        "(new, read, unread, read_all, delete, sync).",
        ("action",),
    ),
)


class Off:
    """The figures while metrics are off: every method does nothing."""

    enabled = False

    def stream_opened(self, door: str, channels: int) -> None:
        pass

    def stream_closed(self, door: str, reason: str, seconds: float, channels: int) -> None:
        pass

    def published(self, seconds: float) -> None:
        pass

    def publish_failed(self, reason: str, seconds: float) -> None:
        pass

    def delivered(self, count: int) -> None:
        pass

    def resumed(self, reset: str | None) -> None:
        pass

    def caught_up(self, behind: int, lag: int) -> None:
        pass

    def layer_error(self, operation: str, kind: str) -> None:
        pass

    def store_error(self, operation: str) -> None:
        pass

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        pass

    def set(self, name: str, value: float, **labels: str) -> None:
        pass

    def observe(self, name: str, value: float, **labels: str) -> None:
        pass


OFF = Off()


class Prometheus(Off):
    """The figures in ``prometheus_client``'s registry (made once per process)."""

    enabled = True

    def __init__(self, registry: Any = None) -> None:
        import prometheus_client

        if registry is None:
            registry = prometheus_client.REGISTRY
        kinds = {
            "counter": prometheus_client.Counter,
            "gauge": prometheus_client.Gauge,
            "histogram": prometheus_client.Histogram,
        }
        self.metrics: dict[str, Any] = {}
        for f in FIGURES:
            kwargs: dict[str, Any] = {"labelnames": f.labels, "registry": registry}
            if f.kind == "gauge":
                kwargs["multiprocess_mode"] = f.mode
            if f.buckets:
                kwargs["buckets"] = f.buckets
            self.metrics[f.name] = kinds[f.kind](PREFIX + f.name, f.help, **kwargs)
        m = self.metrics
        # Bound once: the per-event calls below do no label lookup.
        self._open = {d: m["streams_open"].labels(d) for d in DOORS}
        self._opened = {d: m["streams_opened"].labels(d) for d in DOORS}
        self._closed = {
            (d, r): m["streams_closed"].labels(d, r) for d in DOORS for r in CLOSE_REASONS
        }
        self._deliveries = m["deliveries"]
        self._published = m["events_published"]
        self._publish_seconds = m["publish_duration_seconds"]
        self._lock = threading.Lock()

    def _child(self, bound: dict[Any, Any], name: str, *labels: str) -> Any:
        """The child of ``name`` for ``labels``, bound on first use if not in advance."""
        key = labels if len(labels) > 1 else labels[0]
        child = bound.get(key)
        if child is None:
            with self._lock:
                child = bound[key] = self.metrics[name].labels(*labels)
        return child

    def stream_opened(self, door: str, channels: int) -> None:
        self._child(self._opened, "streams_opened", door).inc()
        self._child(self._open, "streams_open", door).inc()
        self.metrics["channels"].set(channels)

    def stream_closed(self, door: str, reason: str, seconds: float, channels: int) -> None:
        self._child(self._closed, "streams_closed", door, reason).inc()
        self._child(self._open, "streams_open", door).dec()
        self.metrics["stream_duration_seconds"].observe(seconds)
        self.metrics["channels"].set(channels)

    def published(self, seconds: float) -> None:
        self._published.inc()
        self._publish_seconds.observe(seconds)

    def publish_failed(self, reason: str, seconds: float) -> None:
        self.metrics["publish_errors"].labels(reason).inc()
        self._publish_seconds.observe(seconds)

    def delivered(self, count: int) -> None:
        self._deliveries.inc(count)

    def resumed(self, reset: str | None) -> None:
        if reset is None:
            self.metrics["resumes"].labels("replayed", "").inc()
        else:
            self.metrics["resumes"].labels("reset", reset).inc()

    def caught_up(self, behind: int, lag: int) -> None:
        if behind:
            self.metrics["catchup_streams_behind"].inc(behind)
        self.metrics["catchup_lag_events"].set(lag)

    def layer_error(self, operation: str, kind: str) -> None:
        self.metrics["layer_errors"].labels(operation, kind).inc()

    def store_error(self, operation: str) -> None:
        self.metrics["store_errors"].labels(operation).inc()

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        metric = self.metrics[name]
        (metric.labels(**labels) if labels else metric).inc(amount)

    def set(self, name: str, value: float, **labels: str) -> None:
        metric = self.metrics[name]
        (metric.labels(**labels) if labels else metric).set(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        metric = self.metrics[name]
        (metric.labels(**labels) if labels else metric).observe(value)


_made: Prometheus | None = None
_current: Off | None = None
_lock = threading.Lock()


def get() -> Off:
    """The figures to count with: :data:`OFF` unless ``SSE_METRICS`` is on.

    The setting is read once, then remembered (a Django ``setting_changed``
    clears it, so ``override_settings`` works)."""
    current = _current
    if current is None:
        current = _load()
    return current


def _load() -> Off:
    global _current, _made
    with _lock:
        if not conf.SSE_METRICS:
            _current = OFF
            return OFF
        if _made is None:
            try:
                forget_dead_processes()
                # Made once: prometheus_client refuses a second metric of a name.
                _made = Prometheus()
            except Exception as exc:
                # Not installed (check django_sse.E060 says so at startup), or
                # the names are taken in the registry: streams go on uncounted.
                logger.error("SSE_METRICS is on but the metrics cannot be made: %r", exc)
                _current = OFF
                return OFF
        _current = _made
        return _made


def reset(**kwargs: Any) -> None:
    """Read ``SSE_METRICS`` again on next use (receiver of ``setting_changed``)."""
    global _current
    if kwargs.get("setting", "SSE_METRICS") == "SSE_METRICS":
        _current = None


_PID_IN_NAME = re.compile(r"_(\d+)\.db$")


def forget_dead_processes(path: str | None = None) -> list[int]:
    """In multiprocess mode, drop the live gauges of worker processes that are
    gone (killed, or restarted by their server), so ``streams_open`` counts
    only living processes; return their pids.

    A server with a ``child_exit`` hook (gunicorn) should call
    ``prometheus_client.multiprocess.mark_process_dead`` there instead; uvicorn
    has none, so each process does it for its predecessors when it starts."""
    path = path or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path or not os.path.isdir(path):
        return []
    gone: set[int] = set()
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = _PID_IN_NAME.search(name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and not _alive(pid):
            gone.add(pid)
    if gone:
        from prometheus_client import multiprocess

        for pid in gone:
            multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    return sorted(gone)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


def error_kind(exc: BaseException) -> str:
    """The ``kind`` label of a failed layer call: ``timeout`` or ``error``."""
    return "timeout" if isinstance(exc, TimeoutError) else "error"


P = ParamSpec("P")
R = TypeVar("R")


def _failure(exc: Exception) -> str | None:
    """The ``reason`` label of a publish that raised, ``None`` for bad input
    (the caller's bug, not the service's health)."""
    from django.db import DatabaseError

    if isinstance(exc, DatabaseError):
        return "store"
    if isinstance(exc, ValueError | TypeError):
        return None
    return "layer"


@contextmanager
def _counted(figures: Off) -> Iterator[None]:
    """Time the block as one publish; count it as published, or as failed."""
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:
        reason = _failure(exc)
        if reason == "store":
            figures.store_error("append")
        if reason is not None:
            figures.publish_failed(reason, time.perf_counter() - started)
        raise
    figures.published(time.perf_counter() - started)


def timed_publish(func: Callable[P, R]) -> Callable[P, R]:
    """Count and time each call of the sync publish ``func``."""

    @wraps(func)
    def publish(*args: P.args, **kwargs: P.kwargs) -> R:
        figures = get()
        if not figures.enabled:
            return func(*args, **kwargs)
        with _counted(figures):
            return func(*args, **kwargs)

    return publish


def atimed_publish(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Count and time each call of the async publish ``func``."""

    @wraps(func)
    async def publish(*args: P.args, **kwargs: P.kwargs) -> R:
        figures = get()
        if not figures.enabled:
            return await func(*args, **kwargs)
        with _counted(figures):
            return await func(*args, **kwargs)

    return publish
