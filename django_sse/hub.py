"""The per-process hub: one layer channel per event loop, fanning out in memory.

Every stream in the process subscribes here. The hub delivers each event to
the bounded queue of every local stream with ``put_nowait``: it never awaits a
client. A live stream that falls behind by ``SSE_QUEUE_SIZE`` events is closed
(the client reconnects; one still reading the store drops stored events and
reads them there instead), so one slow reader never costs memory without bound
or delays the others.

The other jobs live in modules of their own: a stream's queue and state
(:mod:`.subscription`), layer group membership (:mod:`.membership`), the layer
messages (:mod:`.messages`), recent revocations (:mod:`.revocations`), the
keepalive and deadline timer (:mod:`.ticker`), the catch-up poll
(:mod:`.catchup`) and the supervised tasks (:mod:`.tasks`). The hub runs their
loops and owns them: a stopped hub leaves no task behind, and the next
:func:`get_hub` makes a new one.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

from channels.layers import get_channel_layer

from . import catchup, live, metrics, sessions, ticker
from .events import Event
from .exclude import deliver_except
from .framed import FramedPages
from .membership import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    CONTROL_GROUP,
    DEFAULT_GROUP_EXPIRY,
    Group,
    Membership,
    bounded,
)
from .messages import MESSAGE_TYPE, REVOKE_TYPE, from_message, revocation, to_message
from .presence_hub import PRESENCE_CHANGES, PresenceTracker
from .reads import SharedReads
from .revocations import REVOCATIONS_KEPT, Revocations
from .subscription import Subscription
from .tasks import Tasks

__all__ = [
    "BACKOFF_INITIAL",
    "BACKOFF_MAX",
    "CONTROL_GROUP",
    "DEFAULT_GROUP_EXPIRY",
    "MESSAGE_TYPE",
    "REVOCATIONS_KEPT",
    "REVOKE_TYPE",
    "Hub",
    "Subscription",
    "control_locally",
    "deliver_locally",
    "from_message",
    "get_hub",
    "is_in_memory",
    "local_hubs",
    "to_message",
]

logger = logging.getLogger("django_sse")

#: Yield to streams after this many messages in a row, so a burst does not
#: fill queues faster than their writers can drain them.
DISPATCH_BATCH = 64
#: Seconds ``stop()`` lets streams write their closing event before cancelling.
STOP_GRACE = 5.0


class Hub:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.layer: Any = get_channel_layer()
        self.membership = Membership(self.layer, self._spawn)
        self._subscriptions: set[Subscription] = set()
        self.tasks = Tasks(loop)
        self._started: asyncio.Task[None] | None = None
        self._stopped = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.revocations = Revocations()
        self.presence = PresenceTracker(self)
        self.delivered = 0
        #: The store reads of this hub's streams, shared among them.
        self.reads = SharedReads(self.membership.groups)
        #: Replay pages framed for its streams, shared among them.
        self.framed = FramedPages()
        #: Whether the store's failure was logged and not yet followed by a success.
        self._store_down = False

    # -- compatibility with the hub before its jobs had modules ------------

    @property
    def channel_name(self) -> str | None:
        return self.membership.channel_name

    @property
    def _groups(self) -> dict[str, Group]:
        return self.membership.groups

    @property
    def _rejoin(self) -> asyncio.Event:
        return self.membership.rejoin

    @property
    def subscriptions(self) -> frozenset[Subscription]:
        """The open subscriptions of this hub (a snapshot)."""
        return frozenset(self._subscriptions)

    @property
    def stopped(self) -> bool:
        return self._stopped

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Start the hub once; every caller waits for the same start.

        The start runs as a task of its own, awaited through ``shield``: a
        caller cancelled meanwhile (its client went away) cancels only its own
        wait, never the start that concurrent streams wait for. A hub stopped
        meanwhile returns here; :meth:`subscribe` then closes the stream."""
        if self._stopped:
            raise RuntimeError("this hub is stopped; get_hub() makes a new one")
        if self._started is None:
            self._started = self.loop.create_task(self._start(), context=contextvars.Context())
        starting = self._started
        try:
            await asyncio.shield(starting)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this caller was cancelled
            if not self._stopped:
                raise
            # stop() cancelled the start: the caller sees a stopped hub.

    async def _start(self) -> None:
        try:
            if self.layer is not None and not is_in_memory(self.layer):
                try:
                    channel_name = await bounded(self.layer.new_channel("sse.hub."))
                except Exception:
                    # A Redis that is down, or a loop too busy for the connect
                    # to finish in time (a resume storm of thousands right after
                    # a restart): the streams open anyway and read the store
                    # (the catch-up poll) until the layer answers.
                    logger.warning(
                        "Channel layer error starting the hub; streams are served from the "
                        "event store until it answers",
                        exc_info=True,
                    )
                    self.membership.connecting = True
                    self._spawn(self._connect_later())
                else:
                    if self._stopped:
                        return
                    await self._connected(channel_name)
                if self._stopped:
                    return
            self._keep_running(lambda: ticker.run(self), "keepalive ticker")
            self._keep_running(lambda: catchup.run(self), "catch-up poll")
            self._keep_running(lambda: sessions.check_loop(self), "session check")
            self._keep_running(self.presence.heartbeat, "presence heartbeat")
        except BaseException:
            # No loop of a failed start outlives it: the next call starts afresh.
            await self.tasks.cancel_all()
            self.membership.channel_name = None
            self._started = None
            raise

    async def _connected(self, channel_name: str) -> None:
        """Take ``channel_name`` from the layer: join the control group, receive."""
        self.membership.channel_name = channel_name
        try:
            await bounded(self.layer.group_add(CONTROL_GROUP, channel_name))
        except Exception:
            # Streams still open; the maintenance loop joins later.
            logger.warning("Channel layer error joining the control group", exc_info=True)
            self.membership.rejoin.set()
        if self._stopped:
            return
        self._keep_running(self._receive_loop, "layer receiver")
        self._keep_running(self.membership.maintain, "membership maintenance")

    async def _connect_later(self) -> None:
        """Ask the layer for the hub's channel until it answers, then join every
        group the streams opened meanwhile need."""
        backoff = BACKOFF_INITIAL
        while not self._stopped:
            await asyncio.sleep(backoff)
            try:
                channel_name = await bounded(self.layer.new_channel("sse.hub."))
            except Exception as exc:
                logger.debug("Channel layer still unavailable to the hub: %s", exc)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            if self._stopped:
                return
            self.membership.connecting = False
            # Groups that streams asked for meanwhile are marked failed: the
            # maintenance loop, started now, joins them at once.
            self.membership.rejoin.set()
            await self._connected(channel_name)
            logger.info("Channel layer answered; the hub receives events again")
            return

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of this hub (cancelled when it stops)."""
        return self.tasks.spawn(coro)

    def _keep_running(
        self, factory: Callable[[], Coroutine[Any, Any, Any]], name: str
    ) -> asyncio.Task[Any]:
        """Run the loop ``factory()`` for the hub's life, restarted if it dies."""
        return self.tasks.keep_running(factory, name)

    @property
    def _tasks(self) -> set[asyncio.Task[Any]]:
        return self.tasks.running

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Close every stream with reason ``shutdown``, let the streams write
        their closing event (up to ``grace`` seconds), then stop every task.

        The hub is then gone: :func:`get_hub` makes a new one for the loop."""
        if _hubs.get(self.loop) is self:
            del _hubs[self.loop]
        first = not self._stopped
        self._stopped = True
        starting = self._started
        if starting is not None and not starting.done():
            # A start in flight spawns nothing more once it sees the stop.
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        for sub in list(self._subscriptions):
            sub.close("shutdown")
        try:
            # Only streams being served write a closing event; wait for them.
            if any(s.served for s in self._subscriptions):
                self._idle.clear()
                try:
                    await asyncio.wait_for(self._idle.wait(), grace)
                except TimeoutError:
                    logger.warning(
                        "%d streams had not ended %.1fs after shutdown",
                        len(self._subscriptions),
                        grace,
                    )
        finally:
            # Even when the caller's own bound cancels this stop, no task of
            # the hub outlives it (the hub is already forgotten).
            self._subscriptions.clear()
            self._idle.set()
            await asyncio.shield(self.tasks.cancel_all())
        if (
            first
            and starting is not None
            and starting.done()
            and not starting.cancelled()
            and starting.exception() is None
        ):
            await self.presence.stop()
            await self.membership.leave_all()
        self.membership.groups.clear()

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
        sub = Subscription(tuple(channels), maxsize, self.loop, keepalive)
        sub.owner = owner
        sub.session_key = session_key
        if self._stopped:
            # Shutting down: the stream says so and ends; the client reconnects.
            sub.close("shutdown")
            return sub
        await self.start()
        if self._stopped:
            sub.close("shutdown")  # stopped while it started
            return sub
        self._subscriptions.add(sub)
        try:
            await self.membership.add(sub)
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget ``sub`` now; leaving layer groups happens in the background."""
        if sub not in self._subscriptions:
            return
        self._subscriptions.discard(sub)
        self.membership.discard(sub)
        self.presence.discard(sub)
        # Only a stopping hub waits for its streams to end.
        if self._stopped and not any(s.served for s in self._subscriptions):
            self._idle.set()

    # -- delivery ----------------------------------------------------------

    def dispatch(self, event: Event) -> None:
        group = self.membership.groups.get(event.channel)
        if group is None:
            return
        seq = event.seq
        if seq is not None and (group.seen is None or seq > group.seen):
            group.seen = seq
        # deliver() never changes membership, so no copy of the set is needed.
        if event.exclude is None:
            for sub in group.members:
                sub.deliver(event)
        else:
            deliver_except(group.members, event)
        self.delivered += 1
        metrics.get().delivered(len(group.members))
        if event.name in PRESENCE_CHANGES:
            self.presence.seen(event)

    def revoke(self, owner: str, channel: str | None = None, session: str | None = None) -> int:
        """Close the streams of ``owner`` (on ``channel``, or of ``session``, if given)."""
        return self.revocations.apply(self._subscriptions, owner, channel, session)

    def revoked_since(self, sub: Subscription, since: float) -> bool:
        """Whether a revocation of ``sub`` arrived after ``since`` (``time.monotonic()``)."""
        return self.revocations.since(sub, since)

    def handle_control(self, message: dict[str, Any]) -> None:
        if message.get("type") == REVOKE_TYPE:
            self.revoke(*revocation(message))

    def handle(self, message: Any) -> None:
        """Act on one layer message; raise if it is not one of ours."""
        if not isinstance(message, dict):
            raise TypeError(f"not a dict: {type(message).__name__}")
        kind = message.get("type")
        if kind == MESSAGE_TYPE:
            self.dispatch(from_message(message))
        elif kind == REVOKE_TYPE:
            self.handle_control(message)
        elif kind == live.STATS_TYPE:
            live.answer(self, message)
        else:
            raise TypeError(f"unknown message type {kind!r}")

    def streams_of(self, owner: str) -> int:
        return sum(1 for s in self._subscriptions if s.owner == owner and not s.closed)

    async def _receive_loop(self) -> None:
        backoff = BACKOFF_INITIAL
        count = 0
        while True:
            try:
                message = await self.layer.receive(self.membership.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.get().layer_error("receive", "error")
                logger.warning(
                    "Channel layer receive failed; retrying in %.1fs", backoff, exc_info=True
                )
                self.membership.rejoin.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_INITIAL
            try:
                self.handle(message)
            except Exception as exc:
                # One message, not the loop: the next one is delivered.
                kind = message.get("type") if isinstance(message, dict) else type(message)
                logger.warning("Ignoring a hub message of type %.60r (%.100s)", kind, exc)
            count += 1
            if count % DISPATCH_BATCH == 0:
                await asyncio.sleep(0)

    # -- the store, seen from every stream of the hub -----------------------

    def store_failed(self, exc: BaseException, doing: str) -> None:
        """Log a store failure once per outage, not once per stream."""
        metrics.get().store_error("read")
        if not self._store_down:
            self._store_down = True
            logger.warning("Event store unavailable while %s", doing, exc_info=exc)
        else:
            logger.debug("Event store still unavailable while %s: %s", doing, exc)

    def store_ok(self) -> None:
        if self._store_down:
            self._store_down = False
            logger.info("Event store available again")

    # -- introspection -----------------------------------------------------

    def refresh_interval(self) -> float:
        return self.membership.refresh_interval()

    def subscribers(self, channel: str) -> int:
        group = self.membership.groups.get(channel)
        return len(group.members) if group else 0

    def stats(self) -> dict[str, int]:
        groups = self.membership.groups
        return {
            "streams": len(self._subscriptions),
            "channels": len(groups),
            "joined": sum(1 for g in groups.values() if g.joined),
            "delivered": self.delivered,
            "store_reads": self.reads.queries,
        }


def is_in_memory(layer: Any) -> bool:
    from channels.layers import InMemoryChannelLayer

    return isinstance(layer, InMemoryChannelLayer)


# Keyed weakly by loop: a closed loop that nothing else holds is freed with its
# hub (the hub refers to its loop, so closed loops are also dropped explicitly).
_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def _forget_closed() -> None:
    for loop in [loop for loop in list(_hubs.keys()) if loop.is_closed()]:
        _hubs.pop(loop, None)


def get_hub() -> Hub:
    """The hub of the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        _forget_closed()
        hub = _hubs[loop] = Hub(loop)
    return hub


def local_hubs() -> list[Hub]:
    """The hubs of this process whose loops are still open."""
    _forget_closed()
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
            try:
                hub.loop.call_soon_threadsafe(method, hub, arg)
            except RuntimeError:
                pass  # closed meanwhile
