"""The per-process hub: one layer channel per event loop, fanning out in memory.

Every stream in the process subscribes here. The hub joins the layer group of
an SSE channel when its first local stream needs it and leaves when the last
one goes, and delivers each event to the bounded queue of every local stream
with ``put_nowait``: it never awaits a client. A stream that falls behind by
``SSE_QUEUE_SIZE`` events is closed (the client reconnects), so one slow
reader never costs memory without bound or delays the others.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import weakref
from collections import deque
from typing import Any

from channels.layers import get_channel_layer

from . import sessions
from .events import Event, encode_body
from .names import group_name

logger = logging.getLogger("django_sse")

MESSAGE_TYPE = "sse.event"
#: Revocations reach every process's hub through this group (see revocation.py).
REVOKE_TYPE = "sse.revoke"
# Channel names start with a letter or digit, so no channel's group is this.
CONTROL_GROUP = "sse._control"
#: Seconds between retries while the layer fails, doubling up to the maximum.
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 5.0
#: Fallback when a layer does not say how long group membership lasts.
DEFAULT_GROUP_EXPIRY = 86400
#: Yield to streams after this many messages in a row, so a burst does not
#: fill queues faster than their writers can drain them.
DISPATCH_BATCH = 64
#: Revocations each hub remembers for streams still starting when they came;
#: a stream starts well within a second, so this covers bursts of logouts.
REVOCATIONS_KEPT = 1000


def to_message(event: Event) -> dict[str, Any]:
    return {
        "type": MESSAGE_TYPE,
        "channel": event.channel,
        "name": event.name,
        "id": event.id,
        "seq": event.seq,
        "body": event.body,
    }


def from_message(message: dict[str, Any]) -> Event:
    return Event(
        channel=message["channel"],
        name=message["name"],
        id=message["id"],
        body=message["body"],
        seq=message.get("seq"),
    )


class Subscription:
    """One stream's view of the hub: a bounded queue and a wake-up future."""

    __slots__ = (
        "_buffer",
        "_loop",
        "_waiter",
        "channels",
        "close_reason",
        "deadline",
        "keepalive",
        "keepalive_due",
        "last_write",
        "maxsize",
        "owner",
        "positions",
        "session_key",
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
        self._buffer: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._loop = loop
        self.last_write = loop.time()
        #: The stream's position per stored channel, read by the catch-up poll.
        self.positions: dict[str, int] | None = None
        #: Who reads the stream (a user pk as text) and through which session,
        #: so that a revocation finds it.
        self.owner: str | None = None
        self.session_key: str | None = None
        #: Loop time at which the stream is closed (session expiry, maximum age).
        self.deadline: tuple[float, str] | None = None

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    def __len__(self) -> int:
        return len(self._buffer)

    def deliver(self, event: Event) -> None:
        """Queue ``event`` without waiting; close the stream if it is full."""
        if self.close_reason is not None:
            return
        if len(self._buffer) >= self.maxsize:
            self.close("overflow")
            return
        self._buffer.append(event)
        self._wake()

    def close(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def drain(self) -> list[Event]:
        events = list(self._buffer)
        self._buffer.clear()
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
        """Wait until an event arrives, the stream is closed or a keepalive is due.

        The hub's ticker raises ``keepalive_due``: one timer for the whole
        process, instead of a timer per stream per event."""
        if self._buffer or self.close_reason is not None or self.keepalive_due:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None


class _Group:
    __slots__ = ("joined", "lock", "members", "seen")

    def __init__(self) -> None:
        self.members: set[Subscription] = set()
        self.joined = False
        self.lock = asyncio.Lock()
        #: The highest sequence number dispatched on this channel, if any.
        self.seen: int | None = None


class Hub:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.layer: Any = get_channel_layer()
        self.channel_name: str | None = None
        self._groups: dict[str, _Group] = {}
        self._subscriptions: set[Subscription] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started: asyncio.Future[None] | None = None
        self._rejoin = asyncio.Event()
        self.delivered = 0
        #: Recent revocations, for the streams that were starting when they came.
        self._revocations: deque[tuple[float, str, str | None, str | None]] = deque(
            maxlen=REVOCATIONS_KEPT
        )

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        if self._started is None:
            self._started = self.loop.create_future()
            try:
                self._spawn(self._keepalive_loop())
                self._spawn(self._catch_up_loop())
                self._spawn(sessions.check_loop(self))
                if self.layer is not None and not is_in_memory(self.layer):
                    self.channel_name = await self.layer.new_channel("sse.hub.")
                    try:
                        await self.layer.group_add(CONTROL_GROUP, self.channel_name)
                    except Exception:
                        # Streams still open; the maintenance loop joins later.
                        logger.warning(
                            "Channel layer error joining the control group", exc_info=True
                        )
                        self._rejoin.set()
                    self._spawn(self._receive_loop())
                    self._spawn(self._maintain_loop())
                self._started.set_result(None)
            except BaseException as exc:
                self._started.set_exception(exc)
                self._started = None
                raise
        await asyncio.shield(self._started)

    def _spawn(self, coro: Any) -> None:
        # An empty context: the hub outlives the request that happened to start
        # it, and must not inherit that request's thread-sensitive executor.
        task = self.loop.create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Cancel the hub's tasks and close every stream (tests, shutdown)."""
        for sub in list(self._subscriptions):
            sub.close("shutdown")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- subscriptions -----------------------------------------------------

    async def subscribe(
        self,
        channels: tuple[str, ...] | list[str],
        maxsize: int,
        keepalive: float = 15.0,
        *,
        owner: str | None = None,
        session_key: str | None = None,
    ) -> Subscription:
        await self.start()
        sub = Subscription(tuple(channels), maxsize, self.loop, keepalive)
        sub.owner = owner
        sub.session_key = session_key
        self._subscriptions.add(sub)
        try:
            for channel in sub.channels:
                group = self._groups.get(channel)
                if group is None:
                    group = self._groups[channel] = _Group()
                # Member first: an event arriving right after the join is not missed.
                group.members.add(sub)
                # Always take the lock: it also waits out a leave in flight.
                async with group.lock:
                    await self._join(channel, group)
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget ``sub`` now; leaving layer groups happens in the background."""
        self._subscriptions.discard(sub)
        for channel in sub.channels:
            group = self._groups.get(channel)
            if group is None:
                continue
            group.members.discard(sub)
            if not group.members:
                if group.joined:
                    self._spawn(self._leave(channel, group))
                elif not group.lock.locked():
                    del self._groups[channel]

    async def _join(self, channel: str, group: _Group) -> None:
        if group.joined or not group.members:
            return
        if self.channel_name is not None:
            try:
                await self.layer.group_add(group_name(channel), self.channel_name)
            except Exception:
                # The stream stays open; the maintenance loop joins once the layer is back.
                logger.warning("Channel layer error joining %r; will retry", channel, exc_info=True)
                self._rejoin.set()
                return
        group.joined = True

    async def _leave(self, channel: str, group: _Group) -> None:
        async with group.lock:
            if group.members or not group.joined:
                return
            if self.channel_name is not None:
                try:
                    await self.layer.group_discard(group_name(channel), self.channel_name)
                except Exception:
                    logger.warning("Channel layer error leaving %r", channel, exc_info=True)
            group.joined = False
            if group.members:
                # A stream arrived while we were leaving: join again for it.
                await self._join(channel, group)
            elif self._groups.get(channel) is group:
                del self._groups[channel]

    # -- delivery ----------------------------------------------------------

    def dispatch(self, event: Event) -> None:
        group = self._groups.get(event.channel)
        if group is None:
            return
        seq = event.seq
        if seq is not None and (group.seen is None or seq > group.seen):
            group.seen = seq
        # deliver() never changes membership, so no copy of the set is needed.
        for sub in group.members:
            sub.deliver(event)
        self.delivered += 1

    def revoke(self, owner: str, channel: str | None = None, session: str | None = None) -> int:
        """Close the streams of ``owner`` (on ``channel``, or of ``session``, if given)."""
        revocation = (time.monotonic(), owner, channel, session)
        self._revocations.append(revocation)
        closed = 0
        for sub in self._subscriptions:
            if not sub.closed and _revokes(revocation, sub):
                sub.close("revoked")
                closed += 1
        return closed

    def revoked_since(self, sub: Subscription, since: float) -> bool:
        """Whether a revocation of ``sub`` arrived after ``since`` (``time.monotonic()``).

        A stream authenticated just before a logout but subscribed just after
        it would otherwise stay open."""
        return any(r[0] >= since and _revokes(r, sub) for r in reversed(self._revocations))

    def handle_control(self, message: dict[str, Any]) -> None:
        if message.get("type") == REVOKE_TYPE:
            self.revoke(str(message["owner"]), message.get("channel"), message.get("session"))

    def streams_of(self, owner: str) -> int:
        return sum(1 for s in self._subscriptions if s.owner == owner and not s.closed)

    async def _receive_loop(self) -> None:
        backoff = BACKOFF_INITIAL
        count = 0
        while True:
            try:
                message = await self.layer.receive(self.channel_name)
            except Exception:
                logger.warning(
                    "Channel layer receive failed; retrying in %.1fs", backoff, exc_info=True
                )
                self._rejoin.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_INITIAL
            if message.get("type") == MESSAGE_TYPE:
                try:
                    self.dispatch(from_message(message))
                except (KeyError, TypeError):
                    logger.warning("Ignoring a malformed hub message: %r", message)
            elif message.get("type") == REVOKE_TYPE:
                try:
                    self.handle_control(message)
                except (KeyError, TypeError):
                    logger.warning("Ignoring a malformed hub message: %r", message)
            count += 1
            if count % DISPATCH_BATCH == 0:
                await asyncio.sleep(0)

    async def _keepalive_loop(self) -> None:
        """Wake streams that have been silent for their keepalive interval.

        Ticks at a quarter of the shortest interval (at most once a second), so
        a keepalive goes out between 1 and 1.25 intervals of silence."""
        while True:
            shortest = min((s.keepalive for s in self._subscriptions), default=4.0)
            await asyncio.sleep(min(max(shortest / 4, 0.01), 1.0))
            now = self.loop.time()
            for sub in self._subscriptions:
                sub.check_keepalive(now)

    async def _catch_up_loop(self) -> None:
        """Deliver stored events that the layer did not bring.

        The layer is at most once: an outage, a publisher that died between its
        commit and its publish, or a dropped message leaves a stored event that
        no stream saw. Every ``SSE_HISTORY_POLL`` seconds the hub compares the
        store's last sequence number of each channel it serves with the streams'
        positions, and dispatches what is missing (one read per channel behind,
        not one per stream). Streams drop what they already wrote."""
        from . import store as history
        from .channels import registry
        from .conf import conf

        while True:
            await asyncio.sleep(conf.SSE_HISTORY_POLL)
            store = history.get_store()
            if store is None:
                continue
            try:
                await self._catch_up(store, history, registry)
            except Exception:
                logger.warning("Catching up from the event store failed", exc_info=True)

    async def _catch_up(self, store: Any, history: Any, registry: Any) -> None:
        lows: dict[str, int] = {}
        for channel, group in self._groups.items():
            known = [
                s.positions[channel]
                for s in group.members
                if s.positions is not None and channel in s.positions
            ]
            if known and registry.is_stored(channel):
                # Past what the hub already handed out, not from the slowest
                # stream: events waiting in queues are not sent twice.
                lows[channel] = max(min(known), group.seen or 0)
        if not lows:
            return
        heads = await history.call(store.heads, list(lows))
        behind = {c: low for c, low in lows.items() if heads.get(c, 0) > low}
        while behind:
            records = await history.call(store.read, behind)
            for r in records:
                event = Event(r.channel, r.name, "", encode_body(r.name, r.payload), r.seq)
                self.dispatch(event)
                behind[r.channel] = r.seq
            if len(records) < history.READ_LIMIT:
                break
            await asyncio.sleep(0)

    def refresh_interval(self) -> float:
        expiry = getattr(self.layer, "group_expiry", None) or DEFAULT_GROUP_EXPIRY
        return max(float(expiry) / 2, 0.5)

    async def _maintain_loop(self) -> None:
        """Re-add memberships before the layer expires them, and after errors."""
        backoff = BACKOFF_INITIAL
        while True:
            try:
                await asyncio.wait_for(self._rejoin.wait(), self.refresh_interval())
            except TimeoutError:
                pass
            self._rejoin.clear()
            failed = False
            try:
                await self.layer.group_add(CONTROL_GROUP, self.channel_name)
            except Exception:
                failed = True
                logger.warning("Channel layer error re-joining the control group", exc_info=True)
            for channel, group in [] if failed else list(self._groups.items()):
                if not group.members:
                    continue
                try:
                    await self.layer.group_add(group_name(channel), self.channel_name)
                    group.joined = True
                except Exception:
                    failed = True
                    logger.warning("Channel layer error re-joining %r", channel, exc_info=True)
                    break
            if failed:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                self._rejoin.set()
            else:
                if backoff > BACKOFF_INITIAL:
                    logger.info("Channel layer is back; %d groups re-joined", len(self._groups))
                backoff = BACKOFF_INITIAL

    # -- introspection -----------------------------------------------------

    def subscribers(self, channel: str) -> int:
        group = self._groups.get(channel)
        return len(group.members) if group else 0

    def stats(self) -> dict[str, int]:
        return {
            "streams": len(self._subscriptions),
            "channels": len(self._groups),
            "joined": sum(1 for g in self._groups.values() if g.joined),
            "delivered": self.delivered,
        }


def _revokes(revocation: tuple[float, str, str | None, str | None], sub: Subscription) -> bool:
    _, owner, channel, session = revocation
    if sub.owner != owner or (session is not None and sub.session_key != session):
        return False
    return channel is None or channel in sub.channels


def is_in_memory(layer: Any) -> bool:
    from channels.layers import InMemoryChannelLayer

    return isinstance(layer, InMemoryChannelLayer)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub(loop)
    return hub


def local_hubs() -> list[Hub]:
    return list(_hubs.values())


def control_locally(message: dict[str, Any]) -> None:
    """Hand a control message to every hub of this process, from any thread."""
    _call_hubs(Hub.handle_control, message)


def deliver_locally(event: Event) -> None:
    """Hand ``event`` to every hub of this process, from any thread.

    Used with ``InMemoryChannelLayer``, which is single-process anyway and whose
    ``group_send`` drops messages silently past its capacity."""
    _call_hubs(Hub.dispatch, event)


def _call_hubs(method: Any, arg: Any) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for hub in local_hubs():
        if hub.loop is running:
            method(hub, arg)
        elif not hub.loop.is_closed():
            hub.loop.call_soon_threadsafe(method, hub, arg)
