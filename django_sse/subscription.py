"""One stream's view of the hub: a bounded queue, a wake-up, and its state.

A subscription is ``OPEN`` when the hub made it, ``STARTING`` once a stream
serves it (first bytes, position, snapshots), ``REPLAYING`` while it reads what
its client missed from the store and ``LIVE`` after that. Only a live stream
has a position the catch-up poll may compare with the store: a stream still
replaying is behind by design and fills its own gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .events import Event
from .ids import encode_position

#: Made by the hub; no stream serves it yet.
OPEN = "open"
#: A stream writes its first bytes, reads its position, runs snapshots.
STARTING = "starting"
#: A stream reads what its client missed from the store.
REPLAYING = "replaying"
#: A stream writes events as they come.
LIVE = "live"


class Cursor:
    """A stream's position on its stored channels, and the ``id:`` naming it."""

    __slots__ = ("_id", "channels", "positions")

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

    def values(self) -> tuple[int, ...]:
        """The positions, in channel order."""
        return tuple(self.positions[c] for c in self.channels)

    def jump(self, values: tuple[int, ...]) -> None:
        """Move to ``values`` (as :meth:`values` gives them)."""
        self.positions.update(zip(self.channels, values, strict=True))
        self._id = None

    def frame(self, channel: str, seq: int, body: bytes) -> bytes:
        self.move(channel, seq)
        return b"id: " + self.id + b"\n" + body

    def frame_event(self, event: Event, seq: int) -> bytes:
        """:meth:`frame` for a live event, whose bytes every stream on just its
        channel shares: a fan-out to K streams frames it once, not K times."""
        global _shared
        shared = _shared
        if shared[0] is event and len(self.channels) == 1:
            self.positions[event.channel] = seq
            self._id = shared[1]
            return shared[2]
        frame = self.frame(event.channel, seq, event.body)
        if len(self.channels) == 1:
            _shared = (event, self.id, frame)
        return frame


#: The last event framed for a single-channel stream: (event, its id, its bytes).
#: Replaced whole, never changed, so a hub on another thread reads it safely.
_shared: tuple[Event | None, bytes, bytes] = (None, b"", b"")


class Subscription:
    """A bounded queue and a wake-up future; the hub never awaits it."""

    __slots__ = (
        "_behind",
        "_buffer",
        "_loop",
        "_waiter",
        "channels",
        "close_reason",
        "connection",
        "cursor",
        "deadline",
        "direct",
        "filling",
        "keepalive",
        "keepalive_due",
        "last_write",
        "maxsize",
        "owner",
        "session_key",
        "state",
    )

    def __init__(
        self,
        channels: tuple[str, ...],
        maxsize: int,
        loop: asyncio.AbstractEventLoop,
        keepalive: float = 15.0,
    ):
        self.channels = channels
        self.maxsize = maxsize
        self.keepalive = keepalive
        self.keepalive_due = False
        self.close_reason: str | None = None
        # A list, not a deque: an idle stream's empty list is 56 bytes, a
        # deque's first block 600.
        self._buffer: list[Event] = []
        self._waiter: asyncio.Future[None] | None = None
        self._loop = loop
        self.last_write = loop.time()
        self.state = OPEN
        #: The stream's position on its stored channels, once it has one.
        self.cursor: Cursor | None = None
        #: Sequence numbers the store had that this live stream did not get
        #: from the layer, per channel: the stream reads up to them itself.
        self._behind: dict[str, int] = {}
        #: Whether the stream is reading a hole from the store right now.
        self.filling = False
        #: Who reads the stream (a user pk as text) and through which session,
        #: so that a revocation finds it.
        self.owner: str | None = None
        self.session_key: str | None = None
        #: What ``send_event(..., exclude=request)`` names this stream by.
        self.connection: str | None = None
        #: Loop time at which the stream is closed (session expiry, maximum age).
        self.deadline: tuple[float, str] | None = None
        #: Writes an event to the client now, if it can (:mod:`django_sse.direct`);
        #: ``False`` leaves it to the stream's own task.
        self.direct: Callable[[Event], bool] | None = None

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    @property
    def served(self) -> bool:
        """Whether a stream writes this subscription's events to a client."""
        return self.state != OPEN

    def __len__(self) -> int:
        return len(self._buffer)

    def position(self, channel: str) -> int | None:
        """The last sequence number written on ``channel``, for a live stream only."""
        if self.state != LIVE or self.cursor is None:
            return None
        return self.cursor.positions.get(channel)

    def deliver(self, event: Event) -> None:
        """Queue ``event`` without waiting; if the queue is full, close the
        stream, or (a stored event for a stream reading the store) drop it and
        mark the stream behind."""
        if self.close_reason is not None:
            return
        direct = self.direct
        if direct is not None:
            # parked(), inlined (keep the two in step): this runs once per
            # stream per event, and the call was a tenth of the hub's share.
            waiter = self._waiter
            if (
                waiter is not None
                and not waiter.done()
                and not self._buffer
                and not self.filling
                and not self._behind
                and self.state == LIVE
                and direct(event)
            ):
                return
        if len(self._buffer) >= self.maxsize:
            if event.seq is not None and self._reads_store():
                # It is in the store, which this stream reads anyway: read it
                # from there rather than close a stream that is catching up.
                self.mark_behind(event.channel, event.seq)
                return
            self.close("overflow")
            return
        self._buffer.append(event)
        self._wake()

    def parked(self) -> bool:
        """Whether the stream is live, has written everything it was given,
        and waits for more: an event written for it now is in order."""
        waiter = self._waiter
        return (
            waiter is not None
            and not waiter.done()
            and not self._buffer
            and not self.filling
            and not self._behind
            and self.state == LIVE
        )

    def _reads_store(self) -> bool:
        """Whether the stream is, or will be, reading the store: starting,
        replaying, filling a hole, or marked behind."""
        return self.state != LIVE or self.filling or bool(self._behind)

    def mark_behind(self, channel: str, seq: int) -> None:
        """Ask the stream to read ``channel`` from the store up to ``seq``."""
        if self.close_reason is None and seq > self._behind.get(channel, 0):
            self._behind[channel] = seq
            self._wake()

    def take_behind(self) -> dict[str, int]:
        behind, self._behind = self._behind, {}
        return behind

    def close(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def drain(self) -> list[Event]:
        events, self._buffer = self._buffer, []
        return events

    def wrote(self) -> None:
        """Record that the stream just wrote to its client."""
        self.last_write = self._loop.time()
        self.keepalive_due = False

    def check_keepalive(self, now: float) -> None:
        if self.deadline is not None and now >= self.deadline[0]:
            self.close(self.deadline[1])
        if now - self.last_write >= self.keepalive:
            self.keepalive_due = True
            self._wake()

    async def wait(self) -> None:
        """Wait until an event arrives, the stream is closed or behind, or a
        keepalive is due.

        The hub's ticker raises ``keepalive_due``: one timer for the whole
        process, instead of a timer per stream per event."""
        if self._buffer or self.close_reason is not None or self.keepalive_due or self._behind:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None
