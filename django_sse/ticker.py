"""One timer per hub for keepalives and stream deadlines.

A timer per stream per event would cost more than the events themselves."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .hub import Hub


async def run(hub: Hub) -> None:
    """Wake streams silent for their keepalive interval; close those past a deadline.

    Ticks at a quarter of the shortest interval (at most once a second), so a
    keepalive goes out between 1 and 1.25 intervals of silence."""
    while True:
        shortest = min((s.keepalive for s in hub._subscriptions), default=4.0)
        await asyncio.sleep(min(max(shortest / 4, 0.01), 1.0))
        now = hub.loop.time()
        for sub in hub._subscriptions:
            sub.check_keepalive(now)
