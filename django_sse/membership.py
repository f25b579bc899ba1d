"""Layer group membership of one hub, ref-counted by its local streams.

The hub joins the layer group of an SSE channel when its first local stream
needs it and leaves when the last one goes. Every join and leave of a group
runs under that group's lock and decides from the members it finds then, so a
leave racing a join (or the periodic re-join) never leaves the layer
subscribed to a group nobody here tracks, nor a group tracked with no members.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from . import metrics
from .conf import conf
from .names import group_name
from .subscription import Subscription

logger = logging.getLogger("django_sse")

T = TypeVar("T")

#: Revocations and other control messages reach every hub through this group.
#: Channel names start with a letter or digit, so no channel's group is this.
CONTROL_GROUP = "sse._control"
#: Seconds between retries while the layer fails, doubling up to the maximum.
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 5.0
#: Fallback when a layer does not say how long group membership lasts.
DEFAULT_GROUP_EXPIRY = 86400


async def bounded(call: Awaitable[T]) -> T:
    """One channel-layer call, bounded by ``SSE_PUBLISH_TIMEOUT``: a Redis that
    accepts and never answers would block it forever."""
    try:
        return await asyncio.wait_for(call, conf.SSE_PUBLISH_TIMEOUT)
    except Exception as exc:
        metrics.get().layer_error("membership", metrics.error_kind(exc))
        raise


class Group:
    __slots__ = ("created", "failed", "joined", "lock", "members", "seen")

    def __init__(self) -> None:
        #: ``time.monotonic()`` when the hub began serving the channel: every
        #: event dispatched since then raised ``seen`` (see :mod:`.reads`).
        self.created = time.monotonic()
        self.members: set[Subscription] = set()
        self.joined = False
        #: A join failed and the maintenance loop re-joins: streams that come
        #: meanwhile do not wait for the layer again, one after another.
        self.failed = False
        self.lock = asyncio.Lock()
        #: The highest sequence number dispatched on this channel, if any.
        self.seen: int | None = None


class Membership:
    """Which layer groups the hub's channel is in, and why."""

    def __init__(
        self,
        layer: Any,
        spawn: Callable[[Coroutine[Any, Any, Any]], Any],
    ) -> None:
        self.layer = layer
        self.channel_name: str | None = None
        self.groups: dict[str, Group] = {}
        self._spawn = spawn
        self.rejoin = asyncio.Event()
        #: The hub has a layer but no channel of it yet (see ``Hub._start``):
        #: groups asked for meanwhile are joined once it has one.
        self.connecting = False

    async def add(self, sub: Subscription) -> None:
        for channel in sub.channels:
            group = self.groups.get(channel)
            if group is None:
                group = self.groups[channel] = Group()
            # Member first: an event arriving right after the join is not missed.
            group.members.add(sub)
            # Always take the lock: it also waits out a leave in flight.
            async with group.lock:
                await self._join(channel, group)

    def discard(self, sub: Subscription) -> None:
        """Forget ``sub`` now; leaving layer groups happens in the background."""
        for channel in sub.channels:
            group = self.groups.get(channel)
            if group is None:
                continue
            group.members.discard(sub)
            if group.members:
                continue
            if self.channel_name is None and not group.lock.locked():
                del self.groups[channel]  # no layer to leave
            else:
                # Under the lock, and always through the layer: a join that
                # failed or was cancelled half-way may have reached it.
                self._spawn(self._leave(channel, group))

    async def _join(self, channel: str, group: Group) -> None:
        """Join ``channel``'s layer group if it has members (under ``group.lock``)."""
        if group.joined or group.failed or not group.members:
            return
        if self.connecting:
            group.failed = True  # joined by the maintenance loop once connected
            return
        if self.channel_name is not None:
            try:
                await bounded(self.layer.group_add(group_name(channel), self.channel_name))
            except Exception:
                # The stream stays open; the maintenance loop joins once the
                # layer is back, and the catch-up poll reads what it missed.
                logger.warning("Channel layer error joining %r; will retry", channel, exc_info=True)
                group.failed = True
                self.rejoin.set()
                return
        group.joined = True

    async def _leave(self, channel: str, group: Group) -> None:
        async with group.lock:
            if group.members or self.groups.get(channel) is not group:
                return  # a stream came back, or an earlier leave did the work
            group.joined = False
            if self.channel_name is not None:
                try:
                    await bounded(self.layer.group_discard(group_name(channel), self.channel_name))
                except Exception:
                    logger.warning("Channel layer error leaving %r", channel, exc_info=True)
            if group.members:
                # A stream arrived while we were leaving: join again for it.
                await self._join(channel, group)
            else:
                del self.groups[channel]

    def refresh_interval(self) -> float:
        expiry = getattr(self.layer, "group_expiry", None) or DEFAULT_GROUP_EXPIRY
        return max(float(expiry) / 2, 0.5)

    async def rejoin_all(self) -> bool:
        """Re-add every membership; return whether the layer took them all."""
        assert self.channel_name is not None
        try:
            await bounded(self.layer.group_add(CONTROL_GROUP, self.channel_name))
        except Exception:
            logger.warning("Channel layer error re-joining the control group", exc_info=True)
            return False
        for channel, group in list(self.groups.items()):
            async with group.lock:
                # Under the lock, from the members found now: a leave that ran
                # meanwhile has discarded the group, and must not be undone.
                if not group.members or self.groups.get(channel) is not group:
                    continue
                try:
                    await bounded(self.layer.group_add(group_name(channel), self.channel_name))
                except Exception:
                    logger.warning("Channel layer error re-joining %r", channel, exc_info=True)
                    return False
                group.joined = True
                group.failed = False
        return True

    async def maintain(self) -> None:
        """Re-add memberships before the layer expires them, and after errors."""
        backoff = BACKOFF_INITIAL
        while True:
            try:
                await asyncio.wait_for(self.rejoin.wait(), self.refresh_interval())
            except TimeoutError:
                pass
            self.rejoin.clear()
            if await self.rejoin_all():
                if backoff > BACKOFF_INITIAL:
                    logger.info("Channel layer is back; %d groups re-joined", len(self.groups))
                backoff = BACKOFF_INITIAL
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                self.rejoin.set()

    async def leave_all(self) -> None:
        """Leave every group, joined or being left (the hub stops), all at
        once and within one ``SSE_PUBLISH_TIMEOUT``: errors and a stalled
        layer are logged, not raised (the layer expires what is left)."""
        if self.channel_name is None:
            return
        channel_name = self.channel_name
        names = [group_name(c) for c in self.groups] + [CONTROL_GROUP]
        failed: list[str] = []

        async def leave(name: str) -> None:
            try:
                await self.layer.group_discard(name, channel_name)
            except Exception:
                failed.append(name)

        timeout = conf.SSE_PUBLISH_TIMEOUT
        try:
            await asyncio.wait_for(asyncio.gather(*(leave(n) for n in names)), timeout)
        except TimeoutError:
            logger.warning(
                "Channel layer did not answer leaving %d groups on shutdown within %gs",
                len(names),
                timeout,
            )
        if failed:
            logger.warning(
                "Channel layer error leaving %d groups on shutdown (first %r)",
                len(failed),
                failed[0],
            )
        for group in self.groups.values():
            group.joined = False
