"""Close open streams when access changes, in every server process.

A revocation is a message to the hubs' revocation group on the channel layer
(``RedisPubSubChannelLayer``: every process; ``InMemoryChannelLayer``: this
one). Each hub closes its matching streams with a ``stream-closed`` event whose
data is ``{"reason": "revoked", "reconnect": false}``. Logging out closes the
streams of that session, deactivating a user closes all of theirs, and
:func:`revoke` is there for permission changes the application knows about.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer

from .hub import REVOKE_GROUP, REVOKE_TYPE, is_in_memory, local_hubs

logger = logging.getLogger("django_sse")


def _user_key(user: Any) -> str:
    pk = getattr(user, "pk", user)
    if pk is None:
        raise ValueError("revoke() needs a saved user or a user pk")
    return str(pk)


def _local(user: str, session: str | None, channel: str | None) -> None:
    for hub in local_hubs():
        if not hub.loop.is_closed():
            hub.loop.call_soon_threadsafe(hub.revoke, user, session, channel)


async def _arevoke(user: str, session: str | None, channel: str | None) -> None:
    layer = get_channel_layer()
    if layer is None or is_in_memory(layer):
        _local(user, session, channel)
        return
    message = {"type": REVOKE_TYPE, "user": user, "session": session, "channel": channel}
    await layer.group_send(REVOKE_GROUP, message)


async def arevoke(user: Any, channel: str | None = None, *, session: str | None = None) -> None:
    """Close the open streams of ``user`` (a user or a pk), in every process.

    With ``channel``, only the streams that include that channel; with
    ``session`` (a session key), only the streams that session opened.
    A closed client that reconnects is checked again, as any new stream."""
    await _arevoke(_user_key(user), session, channel)


_pending: set[asyncio.Task[None]] = set()


def revoke(user: Any, channel: str | None = None, *, session: str | None = None) -> None:
    """Synchronous twin of :func:`arevoke`, for views, signals and the shell.

    Called on an event loop's thread (a signal sent from async code), it
    schedules the revocation on that loop instead of blocking it."""
    from .publish import _runner

    key = _user_key(user)
    layer = get_channel_layer()
    if layer is None or is_in_memory(layer):
        _local(key, session, channel)
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        _runner().run(_arevoke(key, session, channel))
        return
    task = loop.create_task(_arevoke(key, session, channel))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


def on_logout(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    if user is None or getattr(user, "pk", None) is None:
        return
    session = getattr(request, "session", None)
    try:
        revoke(user, session=getattr(session, "session_key", None))
    except Exception:
        # Logging out must not fail because the channel layer is down.
        logger.warning("Could not revoke the streams of a user logging out", exc_info=True)


def on_user_saved(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    if created or getattr(instance, "is_active", True):
        return
    try:
        revoke(instance)
    except Exception:
        logger.warning("Could not revoke the streams of a deactivated user", exc_info=True)
