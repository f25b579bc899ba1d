"""One hub's part in presence and channel occupancy.

The hub counts its local streams per member of each presence channel (and,
when a receiver of ``channel_occupied``/``channel_vacated`` is connected, per
channel), tells the store when a member appears or goes here, and
heartbeats every entry it holds so that the store can expire those of a dead
process. The store says which of those changes are joins or leaves across
every process; this hub announces the ones it caused (or swept).

Calls to the store are coalesced per channel: while one update is in flight,
every change that arrives waits for the next one, so a storm of a thousand
streams opening costs a few round trips, not a thousand. Snapshot reads are
shared the same way. A store that fails or stalls costs a stream at most
``SSE_PUBLISH_TIMEOUT`` once: the stream opens without a snapshot, and the
next heartbeat re-adds what the store lost, announcing the joins again and
sending the hub's streams a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from . import metrics, signals
from .channels import call_user_code, registry
from .coalesce import Coalesced
from .conf import conf
from .events import Event, new_event_id
from .presence_api import JOIN, LEAVE, SNAPSHOT, encode_member, member_callable, member_key
from .presence_events import publish, send_signal, snapshot_body, store_failed
from .presence_store import (
    ANONYMOUS,
    OCCUPANCY,
    PRESENCE,
    PresenceUnavailable,
    Result,
    Update,
    get_backend,
)

if TYPE_CHECKING:
    from .hub import Hub
    from .subscription import Subscription

logger = logging.getLogger("django_sse")

#: The events whose versions the hub notes as it dispatches them.
PRESENCE_CHANGES = frozenset({JOIN, LEAVE})
#: The one member of an occupancy set: the process itself.
PROCESS = "*"
#: A gap of more versions than this between two heartbeats is not searched:
#: the counter started over (a restart) or a storm passed; a snapshot is cheaper.
MAX_GAP = 100_000
#: Seconds ``stop()`` gives the store to take this hub's leaves.
STOP_TIMEOUT = 2.0


class _Local:
    """This hub's streams of one member on one channel."""

    __slots__ = ("member", "subs")

    def __init__(self, member: str) -> None:
        self.member = member
        self.subs: set[Subscription] = set()


class Tracked:
    """What this hub holds of one channel's set (presence or occupancy)."""

    def __init__(self, tracker: PresenceTracker, kind: str, channel: str) -> None:
        self.kind = kind
        self.channel = channel
        self.local: dict[str, _Local] = {}
        self.dirty: set[str] = set()
        self.removed: set[str] = set()
        #: Keys the store has taken from this hub: finding one new again
        #: means the store lost it.
        self.stored: set[str] = set()
        self.full = False
        #: A store call failed: the next success re-sends the snapshot.
        self.suspect = False
        #: Versions of the join and leave events this hub dispatched, and the
        #: version up to which none is missing (see ``PresenceTracker.check``).
        self.seen: set[int] = set()
        self.complete = 0
        self.check_at = 0
        self.flush = Coalesced(lambda: tracker.flush(self))
        self.read = Coalesced(lambda: tracker.backend.read(kind, channel))


class PresenceTracker:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.id = uuid.uuid4().hex[:16]
        self.backend = get_backend()
        self.tracked: dict[tuple[str, str], Tracked] = {}
        self.subs: dict[Subscription, list[tuple[Tracked, str]]] = {}
        self._announcing: set[asyncio.Task[None]] = set()
        #: Channels a ``_sweep`` runs for: one each, however often streams
        #: come and go there, or the sweeps would pile up.
        self._sweeping: set[tuple[str, str]] = set()

    # -- streams -------------------------------------------------------------

    async def opened(self, sub: Subscription, user: Any, last_id: bytes | None) -> bytes:
        """Count ``sub`` in; return the ``presence`` snapshots it starts from.

        Waits for the store at most ``SSE_PUBLISH_TIMEOUT`` in all: a stalled
        Redis opens the stream without a snapshot (the count goes on in the
        background)."""
        occupancy = signals.channel_occupied.has_listeners() or (
            signals.channel_vacated.has_listeners()
        )
        members: list[tuple[str, str, str]] = []
        self.subs[sub] = []  # discard() meanwhile removes it: then nothing is counted
        for channel in sub.channels:
            found = registry.resolve(channel)
            if found is not None and found[0].presence:
                members.append((channel, *await self._member(found[0], channel, user)))
        places = self.subs.get(sub)
        if places is None:
            return b""
        for channel, key, member in members:
            places.append((self._place(PRESENCE, channel, key, member, sub), key))
        if occupancy:
            for channel in sub.channels:
                places.append((self._place(OCCUPANCY, channel, PROCESS, "{}", sub), PROCESS))
        if not places:
            del self.subs[sub]
            return b""
        try:
            return await asyncio.wait_for(
                self._snapshots(sub, places, last_id), conf.SSE_PUBLISH_TIMEOUT
            )
        except TimeoutError:
            store_failed("no answer within SSE_PUBLISH_TIMEOUT; a stream opened without a snapshot")
            return b""

    async def _snapshots(
        self, sub: Subscription, places: list[tuple[Tracked, str]], last_id: bytes | None
    ) -> bytes:
        await asyncio.gather(*(self._flush(t) for t, _ in places))
        wanted = [t for t, _ in places if t.kind == PRESENCE]
        if not wanted or sub.closed:
            return b""
        head = b"id: " + last_id + b"\n" if last_id else b""
        out = []
        for tracked in wanted:
            body = await self._snapshot(tracked)
            if body:
                out.append(head + body)
        return b"".join(out)

    def discard(self, sub: Subscription) -> None:
        """Count ``sub`` out (the store hears it in the background)."""
        places = self.subs.pop(sub, None)
        if not places or self.hub.stopped:
            return
        for tracked, key in places:
            local = tracked.local.get(key)
            if local is None:
                continue
            local.subs.discard(sub)
            if not local.subs:
                del tracked.local[key]
                tracked.removed.add(key)
                tracked.dirty.discard(key)
            else:
                tracked.dirty.add(key)
            self.hub.tasks.spawn(self._flush(tracked))

    async def _member(self, reg: Any, channel: str, user: Any) -> tuple[str, str]:
        if not user.is_authenticated:
            return ANONYMOUS, "{}"
        key = member_key(channel, user)
        tracked = self.tracked.get((PRESENCE, channel))
        if tracked is not None and key in tracked.local:
            return key, tracked.local[key].member
        func = member_callable(reg.member)
        try:
            data = await call_user_code(func, user)
            return key, encode_member(channel, data)
        except Exception:
            # Never a partial or private fallback: the member shows with no data.
            logger.exception("Presence member data for channel %r raised; sending {}", channel)
            return key, "{}"

    def _place(self, kind: str, channel: str, key: str, member: str, sub: Subscription) -> Tracked:
        tracked = self.tracked.get((kind, channel))
        if tracked is None:
            tracked = self.tracked[(kind, channel)] = Tracked(self, kind, channel)
        local = tracked.local.get(key)
        if local is None:
            local = tracked.local[key] = _Local(member)
        local.subs.add(sub)
        tracked.dirty.add(key)
        tracked.removed.discard(key)
        return tracked

    # -- the store ---------------------------------------------------------

    async def _flush(self, tracked: Tracked) -> None:
        try:
            await tracked.flush()
        except PresenceUnavailable as exc:
            store_failed(str(exc))

    async def flush(self, tracked: Tracked) -> None:
        """Tell the store this hub's changes on ``tracked`` (under its lock)."""
        full, tracked.full = tracked.full, False
        keys = set(tracked.local) if full else tracked.dirty & set(tracked.local)
        removed = tracked.removed - set(tracked.local)
        tracked.dirty, tracked.removed = set(), set()
        if not keys and not removed:
            self._forget_if_empty(tracked)
            return
        update = Update(
            {k: (len(tracked.local[k].subs), tracked.local[k].member) for k in keys}, removed
        )
        try:
            result = await self.backend.update(
                tracked.kind, tracked.channel, self.id, update, conf.SSE_PRESENCE_TIMEOUT
            )
        except BaseException:
            # Tried again with the next change or heartbeat.
            tracked.dirty |= keys
            tracked.removed |= removed - set(tracked.local)
            tracked.suspect = True
            raise
        lost = full and result.created > len(keys - tracked.stored)
        tracked.stored = (tracked.stored | keys) - removed
        where = (tracked.kind, tracked.channel)
        if not tracked.local and result.remaining and where not in self._sweeping:
            # Nobody here beats for this channel any more, and entries are
            # left: if their process died, someone must sweep them.
            self._sweeping.add(where)
            self.hub.tasks.spawn(self._sweep(*where))
        self._forget_if_empty(tracked)
        if any(c.key != ANONYMOUS for c in result.changes):
            # Not under the channel's lock: heartbeats must not wait for the
            # layer, and versions let the events go out in any order.
            task = self.hub.tasks.spawn(self._announce(tracked.kind, tracked.channel, result))
            self._announcing.add(task)
            task.add_done_callback(self._announcing.discard)
        if tracked.kind != PRESENCE:
            return
        if not tracked.complete:
            # The streams opening now read their snapshots after this update:
            # from here on, every join and leave must reach them as an event.
            tracked.complete = result.version
        if lost or tracked.suspect:
            tracked.suspect = False
            await self._resend_snapshot(tracked)
            # Other processes re-add their members at their own next heartbeat,
            # and their join events may meet a layer still re-subscribing:
            # once every live process has beaten, the truth once more.
            self.hub.tasks.spawn(self._resend_snapshot(tracked, conf.SSE_PRESENCE_TIMEOUT))
        elif full:
            await self.check(tracked, result.version)

    def seen(self, event: Event) -> None:
        """Note the version of a join or leave the hub dispatched."""
        tracked = self.tracked.get((PRESENCE, event.channel))
        at = event.body.rfind(b'"version":')
        if tracked is not None and at != -1:
            digits = event.body[at + 10 :].split(b"}", 1)[0]
            if digits.isdigit():
                tracked.seen.add(int(digits))

    async def check(self, tracked: Tracked, version: int) -> None:
        """At a heartbeat: were all joins and leaves up to the version the
        previous heartbeat saw dispatched here? The channel layer is
        at-most-once (a publish abandoned at its timeout, a layer
        re-subscribing): if one is missing, the hub's streams get a fresh
        snapshot, so every page converges within two heartbeats."""
        target, tracked.check_at = tracked.check_at, version
        if not tracked.complete:
            tracked.complete = target
        if target <= tracked.complete:
            return
        span = target - tracked.complete
        missing = span > MAX_GAP or any(
            v not in tracked.seen for v in range(tracked.complete + 1, target + 1)
        )
        if missing:
            logger.info(
                "Presence events of %r were lost; sending a fresh snapshot", tracked.channel
            )
            await self._resend_snapshot(tracked)
        tracked.complete = max(tracked.complete, target)
        tracked.seen = {v for v in tracked.seen if v > tracked.complete}

    async def _sweep(self, kind: str, channel: str) -> None:
        """Sweep a channel this process left, once the entries left there
        could have expired, until none is left or this process holds it
        again (its heartbeats sweep then): a dead process's last members
        leave (and ``channel_vacated`` fires) even when no live process
        is on the channel."""
        try:
            await self._sweep_until_empty(kind, channel)
        finally:
            self._sweeping.discard((kind, channel))

    async def _sweep_until_empty(self, kind: str, channel: str) -> None:
        while True:
            await asyncio.sleep(conf.SSE_PRESENCE_TIMEOUT + conf.SSE_PRESENCE_HEARTBEAT)
            if (kind, channel) in self.tracked:
                return
            try:
                result = await self.backend.update(
                    kind, channel, self.id, Update(), conf.SSE_PRESENCE_TIMEOUT
                )
            except PresenceUnavailable as exc:
                store_failed(str(exc))
                continue
            if any(c.key != ANONYMOUS for c in result.changes):
                await self._announce(kind, channel, result)
            if not result.remaining:
                return

    def _forget_if_empty(self, tracked: Tracked) -> None:
        if not tracked.local and not tracked.dirty and not tracked.removed:
            if self.tracked.get((tracked.kind, tracked.channel)) is tracked:
                del self.tracked[(tracked.kind, tracked.channel)]

    async def _snapshot(self, tracked: Tracked) -> bytes:
        try:
            state = await tracked.read()
        except PresenceUnavailable as exc:
            store_failed(str(exc))
            return b""
        return snapshot_body(tracked.channel, state)

    async def _resend_snapshot(self, tracked: Tracked, delay: float = 0.0) -> None:
        """The store lost this channel (a restart) and was rebuilt: the hub's
        streams start again from a fresh snapshot."""
        if delay:
            await asyncio.sleep(delay)
        try:
            state = await tracked.read()
        except PresenceUnavailable as exc:
            store_failed(str(exc))
            return
        tracked.complete = max(tracked.complete, state.version)
        body = snapshot_body(tracked.channel, state)
        self.hub.dispatch(Event(tracked.channel, SNAPSHOT, new_event_id(), body))

    # -- announcements -------------------------------------------------------

    async def _announce(self, kind: str, channel: str, result: Result) -> None:
        changes = [c for c in result.changes if c.key != ANONYMOUS]
        if kind == OCCUPANCY:
            for change in changes:
                occupied = change.kind == "join"
                signal = signals.channel_occupied if occupied else signals.channel_vacated
                await send_signal(signal, channel=channel)
            return
        await asyncio.gather(*(publish(self.hub.layer, channel, change) for change in changes))
        figures = metrics.get()
        for change in changes:
            figures.inc("presence_changes", kind=change.kind)
            signal = signals.presence_joined if change.kind == "join" else signals.presence_left
            if signal.has_listeners():
                await send_signal(signal, channel=channel, member=json.loads(change.member))

    # -- the hub's life ----------------------------------------------------

    async def heartbeat(self) -> None:
        """Refresh every entry of this hub before the store expires it."""
        while True:
            await asyncio.sleep(conf.SSE_PRESENCE_HEARTBEAT)
            for tracked in list(self.tracked.values()):
                tracked.full = True
            await asyncio.gather(*(self._flush(t) for t in list(self.tracked.values())))

    async def stop(self) -> None:
        """Take every entry of this hub out of the store (a graceful stop):
        its members leave now, not after the timeout. Bounded."""
        for tracked in self.tracked.values():
            tracked.removed |= set(tracked.local) | tracked.stored
            tracked.local.clear()
            tracked.dirty.clear()
        self.subs.clear()
        pending = [self._flush(t) for t in list(self.tracked.values())]
        if not pending:
            return

        async def leave() -> None:
            await asyncio.gather(*pending)
            # The leaves go out now: the process may exit right after.
            if self._announcing:
                await asyncio.wait(set(self._announcing))

        try:
            await asyncio.wait_for(leave(), STOP_TIMEOUT)
        except TimeoutError:
            logger.warning("The presence store did not take this process's leaves on shutdown")
