"""The stream core: authorize, subscribe, resume, live loop, keepalive, cleanup.

It knows nothing of how it is served: a door (the Django view, or an ASGI
handler) parses the request, calls :func:`authorize`, and sends the bytes that
:func:`event_stream` yields.

With history on, a stream subscribes first (live events wait in its queue),
then replays from the store what the client missed, then goes live. Every
event of a stored channel carries its sequence number; the stream writes each
number once and in order, reading any hole from the store first, so a client
never gets an event and later misses an older one of the same channel.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from django.contrib.auth.models import AnonymousUser

from . import lifecycle, limits, metrics, shutdown
from . import store as history
from .auth import Identity
from .channels import ChannelError, call_user_code, registry
from .conf import conf
from .dbthreads import release_connections
from .direct import DirectWriter
from .events import Event, comment, control, encode_body, encode_payload, retry
from .exclude import stream_key
from .hub import Hub, get_hub
from .ids import decode_position
from .names import channel_name_error
from .subscription import LIVE, REPLAYING, STARTING, Cursor, Subscription

logger = logging.getLogger("django_sse")

KEEPALIVE = comment("keepalive")
#: Events sent by the server itself, not by ``send_event``.
STREAM_CLOSED = "stream-closed"
STREAM_RESET = "stream-reset"
SNAPSHOT = "snapshot"
#: Longer ``Last-Event-ID`` values are not ours: treated as unknown.
MAX_LAST_EVENT_ID = 256
#: Close reasons after which the client must not reconnect: access is gone.
FINAL_REASONS = frozenset({"revoked", "password changed", "session ended", "user deleted"})
SESSION_EXPIRED = "session expired"
MAX_AGE = "max age"
#: The store failed mid-stream (a database outage): come back later.
UNAVAILABLE = "unavailable"
HISTORY_EXPIRED = "history expired"
#: A client told to come back after an outage waits this many times
#: ``SSE_RETRY_MS``, drawn at random, so clients do not return all at once.
UNAVAILABLE_RETRY = (1.0, 4.0)
#: Seconds between the attempts of a failing store read before giving up.
STORE_RETRY_PAUSES = (0.05, 0.25)


def parse_channels(raw: Iterable[str]) -> tuple[str, ...]:
    """Validate the requested channel names (400 on the first bad one)."""
    names = tuple(dict.fromkeys(raw))
    if not names:
        raise ChannelError(400, "no channel requested: add ?channel=<name> to the URL")
    limit = conf.SSE_MAX_CHANNELS
    if len(names) > limit:
        raise ChannelError(
            400, f"too many channels: {len(names)} requested, at most {limit} (SSE_MAX_CHANNELS)"
        )
    for name in names:
        error = channel_name_error(name)
        if error is not None:
            raise ChannelError(400, error)
    return names


async def authorize(user: Any, raw: Iterable[str]) -> tuple[str, ...]:
    """Return the channels ``user`` may stream, or raise ``ChannelError``.

    Every channel is checked before anything is subscribed."""
    names = parse_channels(raw)
    for name in names:
        if registry.resolve(name) is None:
            raise ChannelError(404, f"channel {name!r} matches no registered channel")
    for name in names:
        await registry.authorize(user, name)
    return names


class StoreUnavailable(Exception):
    """The event store failed while a stream was reading it."""


class StreamState:
    """What one stream needs to write events in order, without gaps or repeats.

    Every read of the store checks that each record follows the one before it
    on its channel: a hole (events pruned before they could be read) becomes a
    ``stream-reset`` that names it, never a silent skip."""

    def __init__(
        self, hub: Hub, sub: Subscription, cursor: Cursor | None, stored: tuple[str, ...] = ()
    ) -> None:
        self.sub = sub
        self.hub = hub
        #: The stream's stored channels; without a cursor, nothing of them is written.
        self.stored = stored
        self.cursor = cursor
        sub.cursor = cursor
        self.store = history.get_store()
        self._last_id: bytes | None = None
        #: The fast path's writer, once the hub writes the live stream's events.
        self.direct: DirectWriter | None = None
        #: Created right after the subscription: shared store pages read
        #: since then hold everything the live queue does not.
        self.since = time.monotonic()

    @property
    def last_id(self) -> bytes | None:
        """The ``id:`` a reconnecting client resumes from: the position, once
        the stream has one, else the last event id written."""
        return self.cursor.id if self.cursor is not None else self._last_id

    async def read(
        self, positions: dict[str, int], limit: int = history.READ_LIMIT
    ) -> list[history.Record]:
        assert self.store is not None
        records: list[history.Record] = await _call_store(
            self.hub, self.hub.reads.read, positions, limit, self.since
        )
        return records

    def _hole(self, channel: str, before: int) -> bytes:
        """A reset for the events of ``channel`` up to ``before`` that the store
        no longer has; the cursor moves past them, so a reconnect resumes after."""
        assert self.cursor is not None
        self.cursor.move(channel, before)
        return control(STREAM_RESET, {"reason": HISTORY_EXPIRED}, self.cursor.id.decode())

    def _page(self, records: list[history.Record]) -> bytes:
        """Frame ``records`` (oldest first), resetting at any hole; the same
        page from the same position is framed once per hub (:mod:`.framed`)."""
        cursor = self.cursor
        assert cursor is not None
        if len(cursor.positions) != len(cursor.channels):
            # Positions beyond the id's channels: the key would not name them.
            return self._frame_page(records)
        key = (cursor.channels, cursor.values(), tuple(r.pk for r in records))
        found = self.hub.framed.get(key, records)
        if found is not None:
            cursor.jump(found[1])
            return found[0]
        page = self._frame_page(records)
        self.hub.framed.put(key, records, (page, cursor.values()))
        return page

    def _frame_page(self, records: list[history.Record]) -> bytes:
        assert self.cursor is not None
        positions = self.cursor.positions
        out: list[bytes] = []
        for r in records:
            position = positions[r.channel]
            if r.seq <= position:
                continue
            if r.seq != position + 1:
                out.append(self._hole(r.channel, r.seq - 1))
            out.append(self.cursor.frame(r.channel, r.seq, r.wire()))
        return b"".join(out)

    def frame(self, event: Event) -> bytes | None:
        """The wire bytes of ``event`` (``b""``: nothing to write), or ``None``
        when the store holds events before it that the stream has not written:
        :meth:`fill` reads them first."""
        cursor = self.cursor
        if cursor is None:
            if self.stored:
                # Closed before it had a position: a stored event written now
                # would leave a hole, and any id would not be a position. The
                # client keeps its last id and reads these on its reconnect.
                return event.body if event.seq is None else b""
            self._last_id = event.id.encode()
            return b"id: " + self._last_id + b"\n" + event.body
        position = cursor.positions.get(event.channel)
        if position is None or event.seq is None:
            # An ephemeral channel: the position does not move.
            return b"id: " + cursor.id + b"\n" + event.body
        if event.seq <= position:
            return b""  # already written (replay, or read from the store)
        if event.seq > position + 1:
            return None
        if not event.body:
            # Excluded (``send_event(..., exclude=request)``): skipped, not missed.
            cursor.move(event.channel, event.seq)
            return b""
        return cursor.frame_event(event, event.seq)

    def frame_all(self, events: list[Event]) -> tuple[bytes, int]:
        """The wire bytes of ``events`` up to the first that needs a store read,
        and how many were framed (``len(events)`` when all were)."""
        out: list[bytes] = []
        for done, event in enumerate(events):
            frame = self.frame(event)
            if frame is None:
                return b"".join(out), done
            out.append(frame)
        return b"".join(out), len(events)

    async def frames(self, events: list[Event]) -> AsyncIterator[bytes]:
        """The wire bytes of ``events``, in chunks; holes are read from the store."""
        done = 0
        while done < len(events):
            chunk, framed = self.frame_all(events[done:])
            if chunk:
                yield chunk
            done += framed
            if done < len(events):
                event = events[done]
                assert event.seq is not None  # only a stored event has a hole
                async for chunk in self.fill(event.channel, event.seq - 1):
                    yield chunk
                # The hole is filled (or reset): the event now follows.

    async def fill(self, channel: str, upto: int) -> AsyncIterator[bytes]:
        """Read ``channel`` from the store up to ``upto``, a page at a time."""
        assert self.cursor is not None
        # Meanwhile a full queue drops stored events (this stream reads them
        # here, or next) instead of closing the stream.
        self.sub.filling = True
        try:
            while self.cursor.positions[channel] < upto:
                position = self.cursor.positions[channel]
                # A full page, not just up to ``upto``: streams filling the same
                # hole then share one read (the rest is filtered out here).
                records = await self.read({channel: position})
                records = [r for r in records if r.seq <= upto]
                if not records:
                    # Pruned before we could read it: tell the client to reload.
                    yield self._hole(channel, upto)
                    return
                yield self._page(records)
        finally:
            self.sub.filling = False

    async def replay(self) -> AsyncIterator[bytes]:
        """Everything after the cursor, oldest first, in pages."""
        assert self.cursor is not None
        while not self.sub.closed:
            records = await self.read(dict(self.cursor.positions))
            if not records:
                return
            page = self._page(records)
            if page:
                yield page
            if len(records) < history.READ_LIMIT:
                return


async def _call_store(hub: Hub, func: Any, *args: Any) -> Any:
    """A store read for a stream of ``hub`` (``func`` is one of ``hub.reads``,
    shared with the hub's other streams); ``StoreUnavailable`` once it failed
    a few times in a row (a lock held by a writer passes, an outage does not)."""
    for pause in (*STORE_RETRY_PAUSES, None):
        try:
            result = await func(*args)
        except Exception as exc:
            if pause is None:
                hub.store_failed(exc, "a stream read it")
                raise StoreUnavailable from exc
            await asyncio.sleep(pause)
        else:
            hub.store_ok()
            return result
    raise AssertionError("unreachable")


async def _start_position(
    hub: Hub, stored: tuple[str, ...], last_event_id: str | None, since: float
) -> tuple[dict[str, int], str | None]:
    """The cursor to start from, and why the client must reset (or ``None``)."""
    resumed = None
    if last_event_id and len(last_event_id) <= MAX_LAST_EVENT_ID:
        resumed = decode_position(last_event_id, stored)
    heads = await _call_store(hub, hub.reads.heads, stored, since, resumed)
    if not last_event_id:
        return heads, None
    if resumed is None:
        return heads, "unknown last event id"
    if any(resumed[c] > heads[c] for c in stored):
        return heads, "unknown last event id"
    behind = [c for c in stored if resumed[c] < heads[c]]
    if behind:
        oldest = await _call_store(hub, hub.reads.oldest, behind)
        if any(oldest.get(c, heads[c] + 1) > resumed[c] + 1 for c in behind):
            return heads, HISTORY_EXPIRED
    return resumed, None


async def _snapshots(channels: tuple[str, ...], user: Any, cursor: Cursor | None) -> bytes:
    """Each channel's snapshot, taken after the position was read.

    An event published meanwhile is in the snapshot and is also written after
    it, never lost: snapshot data is state, so applying such an event again
    leaves the same state (see docs/delivery.rst)."""
    out = []
    ran = False
    for name in channels:
        found = registry.resolve(name)
        snapshot = found[0].snapshot if found else None
        if found is None or snapshot is None:
            continue
        ran = True
        try:
            data = await call_user_code(snapshot, user, **found[1])
        except Exception:
            # A broken snapshot must not keep the stream from opening.
            logger.exception("Snapshot of channel %r raised; none sent", name)
            continue
        payload = encode_payload(name, SNAPSHOT, {"channel": name, "data": data})
        head = b"id: " + cursor.id + b"\n" if cursor else b""
        out.append(head + encode_body(SNAPSHOT, payload))
    if ran:
        # Snapshots query on the request's thread: do not keep its connection.
        await release_connections()
    return b"".join(out)


def _deadline(identity: Identity | None, now: float) -> tuple[float, str] | None:
    """Loop time and reason at which the stream closes, if it must."""
    found: list[tuple[float, str]] = []
    age = limits.max_age()
    if age is not None:
        found.append((now + age, MAX_AGE))
    if identity is not None and identity.expires_at is not None:
        found.append((now + identity.expires_at - time.time(), SESSION_EXPIRED))
    return min(found) if found else None


async def event_stream(
    channels: tuple[str, ...],
    *,
    last_event_id: str | None = None,
    user: Any = None,
    identity: Identity | None = None,
    slot: limits.StreamSlot | None = None,
    door: str = "view",
    connection: str | None = None,
    direct: DirectWriter | None = None,
) -> AsyncIterator[bytes]:
    """Yield the wire bytes of a stream on ``channels`` until the client goes.

    The first chunk (``retry:`` and a comment) is yielded as soon as the
    subscription is in place (a new stream first reads the store's heads),
    before any snapshot, so the response head reaches the client at once.
    ``identity`` lets revocation find the stream and closes it when its
    session expires; ``slot`` (from ``limits.acquire``) is released when it
    ends. ``door`` ("view" or "asgi") names who serves it, for the metrics
    and the lifecycle signals; ``connection`` is the client's id for
    ``send_event(exclude=)``. With ``direct`` (the ASGI door's writer), a live
    stream's events are written by the hub as they are delivered
    (:mod:`django_sse.direct`), not by this generator.
    """
    if shutdown.closing.is_set():
        # Shutting down: a hub made now would outlive the stop. Back in a moment.
        if slot is not None:
            slot.release()
        closed = {"reason": shutdown.CLOSE_REASON, "reconnect": True}
        yield retry(conf.SSE_RETRY_MS) + control(STREAM_CLOSED, closed, None)
        return
    if identity is not None:
        user = identity.user
    user = user if user is not None else AnonymousUser()
    hub = get_hub()
    store = history.get_store()
    stored = tuple(sorted(c for c in channels if store and registry.is_stored(c)))
    try:
        sub = await hub.subscribe(
            channels,
            conf.SSE_QUEUE_SIZE,
            conf.SSE_KEEPALIVE,
            owner=identity.owner if identity else None,
            session_key=identity.session_key if identity else None,
        )
    except BaseException:
        if slot is not None:
            slot.release()
        raise
    track = lifecycle.opened(user, channels, door, len(hub.membership.groups))
    sub.state = STARTING
    sub.connection = stream_key(identity.owner if identity else None, connection)
    sub.deadline = _deadline(identity, hub.loop.time())
    if (
        identity is not None
        and identity.since is not None
        and hub.revoked_since(sub, identity.since)
    ):
        sub.close("revoked")
    state = StreamState(hub, sub, None, stored)
    try:
        heads: dict[str, int] | None = None
        failed = False
        if stored and not last_event_id and not sub.closed:
            # A new stream starts from the store's heads, read before its first
            # bytes: every event published after ``onopen`` is then after them.
            # One indexed query; a resuming stream needs none before its bytes.
            try:
                heads = await _call_store(hub, hub.reads.heads, stored, state.since)
            except StoreUnavailable:
                failed = True
        yield retry(conf.SSE_RETRY_MS) + comment("connected")
        sub.wrote()
        try:
            if failed:
                raise StoreUnavailable
            async for chunk in _start(state, stored, channels, user, last_event_id, heads):
                yield chunk
                sub.wrote()
        except StoreUnavailable:
            sub.close(UNAVAILABLE)
        sub.state = LIVE
        if direct is not None:
            direct.attach(state)
        async for chunk in _live(state):
            yield chunk
    finally:
        sub.direct = None
        hub.unsubscribe(sub)
        lifecycle.closed(track, sub.close_reason, len(hub.membership.groups))
        if slot is not None:
            slot.release()


async def _start(
    state: StreamState,
    stored: tuple[str, ...],
    channels: tuple[str, ...],
    user: Any,
    last_event_id: str | None,
    heads: dict[str, int] | None,
) -> AsyncIterator[bytes]:
    """Position, reset, snapshots and replay: what comes before live events.

    A stream revoked meanwhile stops at once: no snapshot (application code
    that may read private data) runs for it, and no further replay page."""
    sub = state.sub
    reset: str | None = None
    if stored and heads is not None:
        # Known already (no store read): even a stream closed meanwhile writes
        # what it has queued with its position.
        state.cursor = sub.cursor = Cursor(stored, heads)
    elif stored and not sub.closed:
        positions, reset = await _start_position(state.hub, stored, last_event_id, state.since)
        state.cursor = sub.cursor = Cursor(stored, positions)
    elif last_event_id and state.store is None:
        reset = "history unavailable"
    if last_event_id and (stored or reset) and not sub.closed:
        metrics.get().resumed(reset)
    cursor = state.cursor
    first = b""
    if reset and not sub.closed:
        # With the current position as its id: the client's next reconnect
        # resumes from here (the header wins over a stale ?lastEventId=).
        here = cursor.id.decode() if cursor else None
        first += control(STREAM_RESET, {"reason": reset}, here)
    if (reset or not last_event_id) and not sub.closed:
        first += await _snapshots(channels, user, cursor)
    if not sub.closed:
        # Presence is state, sent on every connect, a resumed one too.
        first += await state.hub.presence.opened(sub, user, cursor.id if cursor else None)
    if first and not sub.closed:
        yield first
    if cursor is not None and not reset and last_event_id:
        sub.state = REPLAYING
        async for chunk in state.replay():
            yield chunk


async def _live(state: StreamState) -> AsyncIterator[bytes]:
    sub = state.sub
    while True:
        await sub.wait()
        if state.direct is not None:
            # A direct write still in flight goes first, as a send of this task
            # would: what is queued behind it is read only then, so that a
            # revocation meanwhile still keeps it from the client.
            await state.direct.settled()
        # Read before draining: what was queued when the stream was closed is
        # still written, ahead of the closing event, unless access is gone.
        reason = sub.close_reason
        events = sub.drain()
        wrote = False
        if reason not in FINAL_REASONS and reason != UNAVAILABLE:
            try:
                # Without a hole, one chunk and no generator: the common case.
                chunk, framed = state.frame_all(events)
                if chunk:
                    wrote = True
                    sub.wrote()
                    yield chunk
                if framed < len(events):
                    async for chunk in state.frames(events[framed:]):
                        wrote = True
                        sub.wrote()
                        yield chunk
                for channel, seq in sub.take_behind().items():
                    if state.cursor is None or channel not in state.cursor.positions:
                        continue  # no position to read from: the reconnect does
                    async for chunk in state.fill(channel, seq):
                        wrote = True
                        sub.wrote()
                        yield chunk
            except StoreUnavailable:
                sub.close(UNAVAILABLE)
                reason = UNAVAILABLE
        if reason is None and not wrote and sub.keepalive_due:
            sub.wrote()
            yield KEEPALIVE
        if reason is not None:
            last = state.last_id.decode() if state.last_id else None
            reconnect = reason not in FINAL_REASONS
            head = b""
            if reason == UNAVAILABLE:
                # Come back, but not all at once: each client waits its own time.
                low, high = UNAVAILABLE_RETRY
                head = retry(round(conf.SSE_RETRY_MS * random.uniform(low, high)))
            yield head + control(STREAM_CLOSED, {"reason": reason, "reconnect": reconnect}, last)
            return
