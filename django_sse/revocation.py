"""Close open streams when access changes, in every server process.

A revocation is a message to a channel-layer group that every process's hub
joins (``hub.CONTROL_GROUP``); each hub closes the matching streams with a
``stream-closed`` event ``{"reason": "revoked", "reconnect": false}``. Sent on
logout (the streams of that session), when a session row is deleted (not
rotated, see ``sessions.py``) or a REST framework Token is deleted, when a user
is saved inactive or deleted, and by :func:`revoke` when the application
changes a permission. Whatever a message misses, the hubs' periodic session
check (``sessions.py``) still closes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.layers import get_channel_layer
from django.db import DEFAULT_DB_ALIAS, transaction

from .hub import CONTROL_GROUP, REVOKE_TYPE, control_locally, is_in_memory
from .layer import group_send as bounded_group_send
from .layer import revoke_failed
from .sessions import credential, digest


def _message(user: Any, channel: str | None, session: str | None) -> dict[str, Any]:
    pk = getattr(user, "pk", user)
    if pk is None:
        raise ValueError("revoke() needs a saved user or its primary key")
    message: dict[str, Any] = {"type": REVOKE_TYPE, "owner": str(pk)}
    if channel is not None:
        message["channel"] = channel
    if session is not None:
        # A keyed hash: the live key must not travel over Redis, nor be logged.
        message["session"] = digest(session)
    return message


async def _send(message: dict[str, Any]) -> None:
    try:
        layer = get_channel_layer()
    except Exception as exc:  # a misconfigured or unreachable layer
        revoke_failed(f"{type(exc).__name__}: {exc}"[:200])
        layer = None
    if layer is None or is_in_memory(layer):
        control_locally(message)
        return
    # Bounded: a stalled layer must not hang logout or a permission change.
    if not await bounded_group_send(layer, CONTROL_GROUP, message, control=True):
        # Other processes miss it (their streams are checked again when they
        # reconnect), but this process's own streams close now.
        control_locally(message)


async def arevoke(user: Any, channel: str | None = None, *, session: str | None = None) -> None:
    """Close ``user``'s open streams (those on ``channel`` if given), everywhere, now."""
    await _send(_message(user, channel, session))


def revoke(
    user: Any, channel: str | None = None, *, session: str | None = None, using: str | None = None
) -> None:
    """Close ``user``'s open streams (those on ``channel`` if given), in every process.

    ``user`` is a user or its primary key. Call it after taking a permission
    away: the closed streams do not reconnect, and a new stream is checked
    again. Inside ``transaction.atomic()`` it is sent when the transaction
    commits, so a reconnecting client never sees the old permission."""
    message = _message(user, channel, session)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("revoke() was called from async code; use 'await arevoke(...)'")
    alias = using or DEFAULT_DB_ALIAS
    if transaction.get_connection(alias).in_atomic_block:
        transaction.on_commit(lambda: _send_sync(message), using=alias, robust=True)
    else:
        _send_sync(message)


def _send_sync(message: dict[str, Any]) -> None:
    """Never raises: it runs in signal receivers (a logout must not fail)."""
    try:
        layer = get_channel_layer()
        if layer is not None and not is_in_memory(layer):
            from .publish import _runner

            _runner().run(_send(message))  # closes this process's streams on failure
            return
    except Exception as exc:
        revoke_failed(f"{type(exc).__name__}: {exc}"[:200])
    control_locally(message)


def on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """``user_logged_out``: close the streams of the session being ended."""
    if user is None or getattr(user, "pk", None) is None:
        return
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if key:
        revoke(user, session=key)


def revoke_soon(user: Any, session: str | None = None) -> None:
    """:func:`revoke`, from sync or async code (signal receivers run in both)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        revoke(user, session=session)
        return
    task = loop.create_task(arevoke(user, session=session))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Task[None]] = set()


def on_user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``post_delete`` of the user model: all of the user's streams close."""
    if getattr(instance, "pk", None) is not None:
        revoke_soon(instance)


def on_user_saved(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    """``post_save`` of the user model: a deactivated user's streams close."""
    if not created and getattr(instance, "is_active", True) is False:
        revoke(instance)


def on_drf_token_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``post_delete`` of ``rest_framework.authtoken``'s Token (REST framework's
    logout): the streams opened with it, or with a stream token it asked for, close."""
    from rest_framework.authtoken.models import Token

    key = getattr(instance, "key", None)
    user = getattr(instance, "user_id", None)
    if isinstance(instance, Token) and isinstance(key, str) and user is not None:
        revoke_soon(user, session=credential(key))
