"""``send_events``: many events stored in one transaction and published together."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from channels.layers import get_channel_layer
from django.db import DEFAULT_DB_ALIAS, transaction

from . import capture, metrics
from .channels import registry
from .conf import conf
from .events import Event, build_event
from .exclude import arequest_key, request_key
from .hub import deliver_locally, is_in_memory, to_message
from .names import group_name
from .publish_thread import runner as _runner
from .store import append_many, get_store
from .store import call as store_call

logger = logging.getLogger("django_sse")


#: Layer calls in flight at once while a batch is published.
PUBLISH_CONCURRENCY = 64


def _build_all(events: Iterable[tuple[str, str, Any]], exclude: str | None = None) -> list[Event]:
    """Validate and encode every event; each skips the stream ``exclude`` names
    (a key of :mod:`.exclude`), or the one of the enclosing ``excluding()``."""
    key = exclude if exclude is not None else request_key(None)
    built = []
    known: set[str] = set()
    for item in events:
        try:
            channel, name, data = item
        except (TypeError, ValueError):
            raise TypeError(
                f"send_events() takes (channel, event, data) tuples, got {item!r:.60}"
            ) from None
        event = build_event(channel, name, data)
        built.append(event if key is None else replace(event, exclude=key))
        if channel not in known:  # a registry lookup per channel, not per event
            registry.require(channel)
            known.add(channel)
    return built


def _store_many(events: list[Event]) -> list[Event]:
    """Store the events of stored channels in one transaction (joined to the
    caller's when there is one); return them numbered."""
    store = get_store()
    if store is None:
        return events
    stored = {c: registry.is_stored(c) for c in {e.channel for e in events}}
    kept = [i for i, e in enumerate(events) if stored[e.channel]]
    if not kept:
        return events
    seqs = append_many(
        store, [(events[i].channel, events[i].name, events[i].payload) for i in kept]
    )
    out = list(events)
    for i, seq in zip(kept, seqs, strict=True):
        out[i] = events[i].stored(seq)
    return out


async def _publish_many(events: list[Event], timeout: float | None = None) -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("django_sse needs CHANNEL_LAYERS['default'] (see check django_sse.E001)")
    if is_in_memory(layer):
        for i, event in enumerate(events):
            deliver_locally(event)
            if i % 100 == 99:
                await asyncio.sleep(0)  # let streams drain between slices
        await asyncio.sleep(0)
        return
    # One deadline for the whole batch, not one per event: a stalled layer
    # costs the caller SSE_PUBLISH_TIMEOUT, however many events there are.
    gate = asyncio.Semaphore(PUBLISH_CONCURRENCY)
    lost: list[Event] = []

    async def one(event: Event) -> None:
        async with gate:
            try:
                await layer.group_send(group_name(event.channel), to_message(event))
            except Exception:
                if event.seq is None:
                    raise
                lost.append(event)

    tasks = [asyncio.ensure_future(one(event)) for event in events]
    limit = conf.SSE_PUBLISH_TIMEOUT if timeout is None else max(timeout, 0.0)
    done, pending = await asyncio.wait(tasks, timeout=limit)
    for task in pending:
        task.cancel()
    if lost or pending:
        logger.warning(
            "%d of %d events of a batch were not published by the channel layer; "
            "stored ones reach streams through the catch-up poll",
            len(lost) + len(pending),
            len(events),
        )
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]  # an unstored event's error
    if pending and any(event.seq is None for event in events):
        raise TimeoutError(
            f"the channel layer did not answer within SSE_PUBLISH_TIMEOUT "
            f"({conf.SSE_PUBLISH_TIMEOUT:g}s); unstored events of the batch may be lost"
        )


def send_events(
    events: Iterable[tuple[str, str, Any]], *, using: str | None = None, exclude: Any = None
) -> list[Event]:
    """Store and publish many ``(channel, event, data)`` at once.

    Every event is validated (as by :func:`send_event`) before any is stored:
    one bad event raises and nothing is sent. The stored ones are written in
    one transaction with a few statements, then published. Inside
    ``transaction.atomic()`` that happens when the outermost transaction
    commits, and never if it rolls back. Ids stay gap-free per channel.
    ``exclude=request`` skips the requesting tab's stream, as for ``send_event``."""
    return send_built(_build_all(events, request_key(exclude)), using=using)


def send_built(events: list[Event], *, using: str | None = None) -> list[Event]:
    """Store and publish events built by :func:`_build_all`, now or, inside
    ``atomic()`` on ``using``, when it commits (the model hooks' path)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "send_events() was called from async code; use 'await asend_events(...)' instead"
        )
    if not events:
        return events
    alias = using or DEFAULT_DB_ALIAS
    if transaction.get_connection(alias).in_atomic_block:
        transaction.on_commit(lambda: store_and_publish_many(events), using=alias, robust=True)
        return events
    return store_and_publish_many(events)


def store_and_publish_many(events: list[Event]) -> list[Event]:
    """Store validated events now (in the caller's transaction, if any) and
    publish them (a layer failure of stored events is logged, not raised)."""
    started = time.perf_counter()
    stored = _store_many(events)
    _publish_many_sync(stored)
    return _published(stored, started)


def publish_many(events: list[Event]) -> None:
    """Publish built (and stored) events from sync code; a layer failure of
    stored events is logged."""
    started = time.perf_counter()
    _publish_many_sync(events)
    _published(events, started)


def _publish_many_sync(events: list[Event]) -> None:
    if not events:
        return
    layer = get_channel_layer()
    if layer is not None and is_in_memory(layer):
        for event in events:
            deliver_locally(event)
        return

    async def job(timeout: float) -> None:
        await _publish_many(events, timeout)

    # As send_event: stored events are queued and not waited for; a batch
    # with an unstored event is waited for, and its loss raised.
    if any(event.seq is None for event in events):
        _runner().publish(job, wait=True)
    else:
        _runner().publish(job, wait=False, on_error=lambda: _batch_not_published(events))


def _batch_not_published(events: list[Event]) -> None:
    logger.warning(
        "A batch of %d stored events was not published by the channel layer; "
        "streams will catch up from the store",
        len(events),
        exc_info=True,
    )


def _published(events: list[Event], started: float) -> list[Event]:
    """Count the batch (each event as published in the batch's mean time) and
    show each event to ``capture``'s watchers, as :func:`send_event` does."""
    figures = metrics.get()
    if figures.enabled and events:
        each = (time.perf_counter() - started) / len(events)
        for _ in events:
            figures.published(each)
    for event in events:
        capture.published(event)
    return events


async def asend_events(
    events: Iterable[tuple[str, str, Any]], *, exclude: Any = None
) -> list[Event]:
    """Async twin of :func:`send_events`: stores at once (the write runs in a
    store thread), then publishes."""
    started = time.perf_counter()
    built = _build_all(events, await arequest_key(exclude))
    stored = await store_call(_store_many, built, retry=False)
    await _publish_many(stored)
    return _published(list(stored), started)
