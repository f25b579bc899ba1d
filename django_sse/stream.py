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

import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from django.contrib.auth.models import AnonymousUser

from . import limits
from . import store as history
from .auth import Identity
from .channels import ChannelError, call_user_code, registry
from .conf import conf
from .dbthreads import release_connections
from .events import Event, comment, control, encode_body, encode_payload, retry
from .hub import Subscription, get_hub
from .ids import decode_position, encode_position
from .names import channel_name_error

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


class Cursor:
    """A stream's position on its stored channels, and the ``id:`` naming it."""

    def __init__(self, channels: tuple[str, ...], positions: dict[str, int]) -> None:
        self.channels = channels  # sorted
        self.positions = positions
        self._id: bytes | None = None

    @property
    def id(self) -> bytes:
        if self._id is None:
            self._id = encode_position(self.channels, self.positions).encode()
        return self._id

    def move(self, channel: str, seq: int) -> None:
        self.positions[channel] = seq
        self._id = None

    def frame(self, channel: str, seq: int, body: bytes) -> bytes:
        self.move(channel, seq)
        return b"id: " + self.id + b"\n" + body


class StreamState:
    """What one stream needs to write events in order, without gaps or repeats."""

    def __init__(self, sub: Subscription, cursor: Cursor | None) -> None:
        self.sub = sub
        self.cursor = cursor
        self.store = history.get_store() if cursor else None
        self.last_id: bytes | None = None

    async def frames(self, events: list[Event]) -> list[bytes]:
        out: list[bytes] = []
        cursor = self.cursor
        for event in events:
            if cursor is None:
                out.append(b"id: " + event.id.encode() + b"\n" + event.body)
                self.last_id = event.id.encode()
                continue
            position = cursor.positions.get(event.channel)
            if position is None or event.seq is None:
                # An ephemeral channel: the position does not move.
                out.append(b"id: " + cursor.id + b"\n" + event.body)
                continue
            if event.seq <= position:
                continue  # already written (replay, or a catch-up re-delivery)
            if event.seq > position + 1:
                out.extend(await self.fill(event.channel, event.seq - 1))
            out.append(cursor.frame(event.channel, event.seq, event.body))
        if cursor is not None:
            self.last_id = cursor.id
        return out

    async def fill(self, channel: str, upto: int) -> list[bytes]:
        """Read the hole before ``upto + 1`` on ``channel`` from the store."""
        assert self.cursor is not None and self.store is not None
        out: list[bytes] = []
        position = self.cursor.positions[channel]
        while position < upto:
            records = await history.call(
                self.store.read, {channel: position}, min(upto - position, history.READ_LIMIT)
            )
            records = [r for r in records if r.seq <= upto]
            if not records or records[0].seq != position + 1:
                # Pruned before we could read it: tell the client to reload. The
                # reset carries the new position, so a reconnect resumes after it.
                self.cursor.move(channel, upto)
                reset = {"reason": "history expired"}
                out.append(control(STREAM_RESET, reset, self.cursor.id.decode()))
                return out
            for record in records:
                out.append(
                    self.cursor.frame(channel, record.seq, encode_body(record.name, record.payload))
                )
            position = records[-1].seq
        return out

    async def replay(self) -> AsyncIterator[bytes]:
        """Everything after the cursor, oldest first, in pages."""
        assert self.cursor is not None and self.store is not None
        while True:
            records = await history.call(self.store.read, dict(self.cursor.positions))
            if not records:
                return
            yield b"".join(
                self.cursor.frame(r.channel, r.seq, encode_body(r.name, r.payload)) for r in records
            )
            self.last_id = self.cursor.id
            if len(records) < history.READ_LIMIT:
                return


async def _start_position(
    stored: tuple[str, ...], last_event_id: str | None
) -> tuple[dict[str, int], str | None]:
    """The cursor to start from, and why the client must reset (or ``None``)."""
    store = history.get_store()
    assert store is not None
    heads = await history.call(store.heads, stored)
    if not last_event_id:
        return heads, None
    resumed = None
    if len(last_event_id) <= MAX_LAST_EVENT_ID:
        resumed = decode_position(last_event_id, stored)
    if resumed is None:
        return heads, "unknown last event id"
    if any(resumed[c] > heads[c] for c in stored):
        return heads, "unknown last event id"
    behind = [c for c in stored if resumed[c] < heads[c]]
    if behind:
        oldest = await history.call(store.oldest, behind)
        if any(oldest.get(c, heads[c] + 1) > resumed[c] + 1 for c in behind):
            return heads, "history expired"
    return resumed, None


async def _snapshots(channels: tuple[str, ...], user: Any, cursor: Cursor | None) -> bytes:
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
) -> AsyncIterator[bytes]:
    """Yield the wire bytes of a stream on ``channels`` until the client goes.

    The first chunk (``retry:`` and a comment) is yielded as soon as the
    subscription is in place, so the response head reaches the client at once.
    ``identity`` lets revocation find the stream and closes it when its session
    expires; ``slot`` (from ``limits.acquire``) is released when it ends.
    """
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
    sub.deadline = _deadline(identity, hub.loop.time())
    if (
        identity is not None
        and identity.since is not None
        and hub.revoked_since(sub, identity.since)
    ):
        sub.close("revoked")
    try:
        cursor: Cursor | None = None
        reset: str | None = None
        if stored:
            positions, reset = await _start_position(stored, last_event_id)
            cursor = Cursor(stored, positions)
            sub.positions = positions
        elif last_event_id and store is None:
            reset = "history unavailable"
        state = StreamState(sub, cursor)
        first = retry(conf.SSE_RETRY_MS) + comment("connected")
        if reset:
            # With the current position as its id: the client's next reconnect
            # resumes from here (the header wins over a stale ?lastEventId=).
            here = cursor.id.decode() if cursor else None
            first += control(STREAM_RESET, {"reason": reset}, here)
        if reset or not last_event_id:
            first += await _snapshots(channels, user, cursor)
        yield first
        sub.wrote()
        if cursor is not None and not reset and last_event_id:
            async for chunk in state.replay():
                yield chunk
                sub.wrote()
        async for chunk in _live(state):
            yield chunk
    finally:
        hub.unsubscribe(sub)
        if slot is not None:
            slot.release()


async def _live(state: StreamState) -> AsyncIterator[bytes]:
    sub = state.sub
    while True:
        await sub.wait()
        # Read before draining: what was queued when the stream was closed is
        # still written, ahead of the closing event.
        reason = sub.close_reason
        events = sub.drain()
        frames = await state.frames(events) if events else []
        if frames:
            sub.wrote()
            yield b"".join(frames)
        elif sub.keepalive_due:
            sub.wrote()
            yield KEEPALIVE
        if reason is not None:
            last = state.last_id.decode() if state.last_id else None
            reconnect = reason not in FINAL_REASONS
            yield control(STREAM_CLOSED, {"reason": reason, "reconnect": reconnect}, last)
            return
