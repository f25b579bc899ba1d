"""The current position of a set of channels, for pages that stream later.

A page rendered at time T and a stream opened at T+1 would miss what was
published in between. Render the position into the page and open the stream
with it as ``?lastEventId=``: the stream replays exactly what came after T.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import store as history
from .channels import registry
from .ids import encode_position


def _stored(channels: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({c for c in channels if registry.is_stored(c)}))


def current_position(channels: Iterable[str]) -> str:
    """The ``Last-Event-ID`` a stream on ``channels`` would have now.

    Empty when history is off or no channel is stored; a stream then starts
    live, as without a last event id."""
    store = history.get_store()
    stored = _stored(channels)
    if store is None or not stored:
        return ""
    return encode_position(stored, store.heads(stored))


async def acurrent_position(channels: Iterable[str]) -> str:
    """Async twin of :func:`current_position`; the query runs off the event loop."""
    store = history.get_store()
    stored = _stored(channels)
    if store is None or not stored:
        return ""
    return encode_position(stored, await history.call(store.heads, stored))
