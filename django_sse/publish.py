"""``send_event`` and ``asend_event``: validate and encode once, then publish."""

from __future__ import annotations

import asyncio
import logging
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
from .layer import group_send as bounded_group_send
from .names import group_name
from .publish_thread import LoopThread, runner
from .store import BaseStore, get_store
from .store import call as store_call

logger = logging.getLogger("django_sse")


async def _publish(event: Event, timeout: float | None = None) -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("django_sse needs CHANNEL_LAYERS['default'] (see check django_sse.E001)")
    if is_in_memory(layer):
        deliver_locally(event)
        # Let the streams write before the next publish: a tight loop of
        # asend_event() would otherwise fill every queue before any drains.
        await asyncio.sleep(0)
    else:
        # Bounded: a stalled layer costs the caller SSE_PUBLISH_TIMEOUT at most.
        # A stored event is not lost (the catch-up poll delivers it); an
        # unstored one is, and its caller is told, as for any layer error.
        sent = await bounded_group_send(
            layer, group_name(event.channel), to_message(event), timeout=timeout
        )
        if not sent and event.seq is None:
            raise TimeoutError(
                f"the channel layer did not answer within SSE_PUBLISH_TIMEOUT "
                f"({conf.SSE_PUBLISH_TIMEOUT:g}s); the event was not stored and is lost"
            )


def _history(event: Event, stored: bool) -> BaseStore | None:
    store = get_store()
    if store is None or not stored:
        return None
    return store


def _not_published(event: Event) -> None:
    # Stored, so not lost: streams find it when they next check the store.
    logger.warning(
        "Event %r on channel %r was stored as #%s but the channel layer failed; "
        "streams will catch up from the store",
        event.name,
        event.channel,
        event.seq,
        exc_info=True,
    )


@metrics.atimed_publish
async def asend_event(channel: str, event: str, data: Any, *, exclude: Any = None) -> Event:
    """Store and publish an event for every stream on ``channel``, in any process.

    Raises ``ValueError`` for a bad channel or event name (a channel that
    matches no registered pattern, a name the server reserves) or an oversized
    payload, ``TypeError`` for a payload JSON cannot encode. Stores and
    publishes at once: it does not wait for a database transaction. The
    database write runs in a worker thread, never on the event loop.

    ``exclude=request`` skips the stream of the tab that sent ``request``
    (its ``X-SSE-Connection`` header, and its user): see docs/publishing.rst.
    """
    built = build_event(channel, event, data)
    # A typo would be stored forever, unreadable.
    stored = not registry.require(channel)[0].ephemeral
    built = replace(built, exclude=await arequest_key(exclude))
    store = _history(built, stored)
    if store is None:
        await _publish(built)
        return capture.published(built)
    built = built.stored(await store_call(store.append, channel, event, built.payload, retry=False))
    try:
        await _publish(built)
    except Exception:
        _not_published(built)
    return capture.published(built)


def send_event(
    channel: str, event: str, data: Any, *, using: str | None = None, exclude: Any = None
) -> Event:
    """Synchronous twin of :func:`asend_event`.

    Inside ``transaction.atomic()`` the event is stored and published when the
    outermost transaction commits, and never if it rolls back; the returned
    event then has no ``seq`` yet. Bad input raises at once.
    """
    built = build_event(channel, event, data)
    # One lookup for both: a typo would be stored forever, unreadable.
    stored = not registry.require(channel)[0].ephemeral
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "send_event() was called from async code; use 'await asend_event(...)' instead"
        )
    built = replace(built, exclude=request_key(exclude))
    alias = using or DEFAULT_DB_ALIAS
    if transaction.get_connection(alias).in_atomic_block:
        transaction.on_commit(lambda: _store_and_publish(built, stored), using=alias, robust=True)
        return built
    return _store_and_publish(built, stored)


@metrics.timed_publish
def _store_and_publish(event: Event, stored: bool) -> Event:
    store = _history(event, stored)
    if store is None:
        _publish_sync(event)
        return capture.published(event)
    event = event.stored(store.append(event.channel, event.name, event.payload))
    try:
        _publish_sync(event)
    except Exception:
        _not_published(event)
    return capture.published(event)


def _publish_sync(event: Event) -> None:
    layer = get_channel_layer()
    if layer is not None and is_in_memory(layer):
        deliver_locally(event)
        return
    if layer is None:
        raise RuntimeError("django_sse needs CHANNEL_LAYERS['default'] (see check django_sse.E001)")

    async def job(timeout: float) -> None:
        await _publish(event, timeout)

    # A stored event is queued, not waited for: its publish's failure is
    # only logged (publish_thread.py says why). An unstored one is waited for.
    if event.seq is None:
        _runner().publish(job, wait=True)
    else:
        _runner().publish(job, wait=False, on_error=lambda: _not_published(event))


def _runner() -> LoopThread:
    # Kept for the modules that run a call on the loop (revocation, presence).
    return runner()
