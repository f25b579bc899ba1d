"""Presence channels: who is on a channel, across every server process.

Opt a channel pattern in with ``channels.register("ticket:{pk}", can_read,
presence=True)``. Its streams then get a ``presence`` snapshot when they
connect and ``presence.join`` / ``presence.leave`` events when a user's first
stream on the channel opens and their last one closes, and server code can
ask :func:`presence` / :func:`apresence`. See docs/presence.rst.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.utils.crypto import salted_hmac
from django.utils.module_loading import import_string

from .conf import conf
from .presence_store import PRESENCE, PresenceUnavailable, State, get_backend

__all__ = [
    "JOIN",
    "LEAVE",
    "SNAPSHOT",
    "Member",
    "Presence",
    "PresenceUnavailable",
    "apresence",
    "default_member",
    "member_key",
    "presence",
]

#: The events of presence channels; the server's alone (publishing them is refused).
SNAPSHOT = "presence"
JOIN = "presence.join"
LEAVE = "presence.leave"
#: Longest member data (JSON) kept per member; a bigger one is refused.
MAX_MEMBER_BYTES = 2048


@dataclass(frozen=True)
class Member:
    #: Opaque, stable per user and channel (never the user's pk itself).
    key: str
    #: Exactly what the member callable returned.
    data: dict[str, Any]


@dataclass(frozen=True)
class Presence:
    channel: str
    #: Signed-in users on the channel, each once however many streams they hold.
    members: list[Member]
    #: Open streams on the channel, anonymous ones included.
    streams: int
    #: Of which anonymous (counted, never listed).
    anonymous: int
    #: The version of the set this answer saw (see docs/presence.rst).
    version: int

    @property
    def users(self) -> int:
        return len(self.members)


def default_member(user: Any) -> dict[str, Any]:
    """The default member data: the user's pk and display name, nothing else
    (never the email or any other private field)."""
    name = ""
    full = getattr(user, "get_full_name", None)
    if callable(full):
        name = str(full() or "").strip()
    if not name:
        name = str(user.get_username())
    return {"id": user.pk, "name": name}


def member_key(channel: str, user: Any) -> str:
    """The member's key on ``channel``: a keyed hash of the user's pk, so a
    member callable that leaves the pk out does not send it anyway, and keys
    of two channels cannot be matched."""
    return salted_hmac("django_sse.presence", f"{channel}\x00{user.pk}").hexdigest()[:20]


def member_callable(registered: Callable[..., Any] | None) -> Callable[..., Any]:
    if registered is not None:
        return registered
    path = conf.SSE_PRESENCE_MEMBER
    return import_string(path) if path else default_member


def encode_member(channel: str, data: object) -> str:
    """Member data as JSON text; ``TypeError``/``ValueError`` at the boundary."""
    if not isinstance(data, dict):
        raise TypeError(
            f"presence member data for channel {channel!r} must be a dict, "
            f"got {type(data).__name__}"
        )
    from .events import encode_payload

    text = encode_payload(channel, SNAPSHOT, data)
    if len(text.encode("utf-8")) > MAX_MEMBER_BYTES:
        raise ValueError(
            f"presence member data for channel {channel!r} is longer than "
            f"{MAX_MEMBER_BYTES} bytes of JSON"
        )
    return text


def presence_channel(channel: object) -> str:
    """``channel`` if it is a registered presence channel, else ``ValueError``."""
    from .channels import registry
    from .names import validate_channel_name

    name = validate_channel_name(channel)
    reg, _ = registry.require(name)
    if not reg.presence:
        raise ValueError(
            f"channel {name!r} is not a presence channel: register it with presence=True"
        )
    return name


def as_presence(channel: str, state: State) -> Presence:
    members = [Member(key, json.loads(data)) for key, data in sorted(state.members.items())]
    return Presence(channel, members, state.streams, state.anonymous, state.version)


async def apresence(channel: str, *, user: Any = None) -> Presence:
    """Who is on the presence channel ``channel`` now, counted across every
    process: one Redis script (or a dict lookup with the in-memory layer),
    O(entries) where an entry is one member on one server process.

    With ``user=``, raise ``PermissionDenied`` unless ``user`` may read the
    channel (the stream's own policy): check it before showing members to
    anyone. Raise ``PresenceUnavailable`` when Redis does not answer within
    ``SSE_PUBLISH_TIMEOUT``."""
    name = presence_channel(channel)
    if user is not None:
        from .channels import ChannelError, registry

        try:
            await registry.authorize(user, name)
        except ChannelError as exc:
            if exc.status == 503:  # the policy met a database error: not a "no"
                raise PresenceUnavailable(exc.reason) from None
            raise PermissionDenied(exc.reason) from None
    state = await get_backend().read(PRESENCE, name)
    return as_presence(name, state)


def presence(channel: str, *, user: Any = None) -> Presence:
    """Synchronous twin of :func:`apresence` (not from async code)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("presence() was called from async code; use 'await apresence(...)'")
    from .publish import _runner

    presence_channel(channel)  # bad input raises here, in the caller's thread
    future = asyncio.run_coroutine_threadsafe(apresence(channel, user=user), _runner().loop)
    try:
        return future.result(conf.SSE_PUBLISH_TIMEOUT + 1.0)
    except TimeoutError:
        future.cancel()
        raise PresenceUnavailable("the presence read did not run in time") from None
