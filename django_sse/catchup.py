"""The catch-up poll: find live streams the channel layer left behind.

The layer is at most once: an outage, a publisher that died between its commit
and its publish, or a dropped message leaves a stored event that no stream saw.
Every ``SSE_HISTORY_POLL`` seconds the hub reads the store's last sequence
number of each stored channel it serves (one query for all of them) and marks
every live stream whose position is below what the store held one poll earlier
as behind; each such stream reads the missing events from the store itself, in
pages, after what its queue holds. The poll hands no stream any event, so it
can never overflow one; a stream still replaying takes no part.

Comparing with the previous poll's heads leaves events still on their way
through the layer alone: a stream reads the store only for what the layer had
a whole interval to bring and did not.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from . import metrics
from . import store as history
from .channels import registry
from .conf import conf
from .subscription import Subscription

if TYPE_CHECKING:
    from .hub import Hub


def live_members(hub: Hub) -> dict[str, list[Subscription]]:
    """The live streams of each stored channel the hub serves."""
    found: dict[str, list[Subscription]] = {}
    for channel, group in hub.membership.groups.items():
        members = [s for s in group.members if s.position(channel) is not None]
        if members and registry.is_stored(channel):
            found[channel] = members
    return found


async def poll_once(hub: Hub, previous: dict[str, int]) -> dict[str, int]:
    """One round; returns the heads to compare with next time."""
    store = history.get_store()
    if store is None:
        return {}
    live = live_members(hub)
    if not live:
        return {}
    try:
        heads: dict[str, int] = await history.call(store.heads, list(live))
    except Exception as exc:
        hub.store_failed(exc, "reading the event store's heads")
        return previous
    hub.store_ok()
    behind = lag = 0
    for channel, members in live.items():
        target = previous.get(channel)
        if target is None:
            continue
        group = hub.membership.groups.get(channel)
        if group is not None and group.seen is not None and group.seen >= target:
            # The hub dispatched up to ``target``: every member has it queued,
            # written, or fills the hole before a later event itself.
            continue
        for sub in members:
            position = sub.position(channel)
            if position is not None and position < target:
                sub.mark_behind(channel, target)
                behind, lag = behind + 1, max(lag, target - position)
    metrics.get().caught_up(behind, lag)
    return {c: heads.get(c, 0) for c in live}


async def run(hub: Hub) -> None:
    previous: dict[str, int] = {}
    while True:
        await asyncio.sleep(conf.SSE_HISTORY_POLL)
        previous = await poll_once(hub, previous)
