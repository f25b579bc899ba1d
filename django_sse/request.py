"""What both doors do with a stream request before streaming: check the
origin, authenticate (session, DRF classes or a stream token), check the
channels, take a slot under the per-user limit, read the resume position.
The Django view and the ASGI fast path call :func:`accept` with the same
kind of request, so they refuse and accept exactly the same requests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from . import auth, cors, limits, tokens
from .channels import ChannelError

CONTENT_TYPE = "text/event-stream; charset=utf-8"
STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    # GZipMiddleware skips responses that already declare an encoding; a
    # compressed event stream would be held back by the compressor.
    "Content-Encoding": "identity",
}
ERROR_CONTENT_TYPE = "text/plain; charset=utf-8"


def error_response(status: int, reason: str, headers: dict[str, str] | None = None) -> HttpResponse:
    """A refusal: the status and one line saying why, never cached."""
    response = HttpResponse(
        reason + "\n", status=status, content_type=ERROR_CONTENT_TYPE, headers=headers
    )
    response["Cache-Control"] = "no-store"
    return response


@dataclass(frozen=True)
class Accepted:
    """A stream request that may go ahead."""

    channels: tuple[str, ...]
    user: Any
    last_event_id: str | None
    identity: auth.Identity | None = None
    slot: limits.Slot | None = None
    #: Seconds until the stream must close, and the reason it then gives.
    lifetime: tuple[float, str] | None = None
    #: ``time.monotonic()`` before authentication: revocations after it apply.
    accepted_at: float | None = None

    def stream(self) -> AsyncIterator[bytes]:
        from .stream import event_stream

        identity = self.identity
        return event_stream(
            self.channels,
            last_event_id=self.last_event_id,
            user=self.user,
            owner=self.slot.owner if self.slot else None,
            session=identity.session_key if identity else None,
            lifetime=self.lifetime,
            slot=self.slot,
            accepted_at=self.accepted_at,
        )


def last_event_id(request: HttpRequest) -> str | None:
    return request.headers.get("Last-Event-ID") or request.GET.get("lastEventId") or None


def check_origin(request: HttpRequest) -> None:
    """Refuse a ``Host`` outside ``ALLOWED_HOSTS`` (400; the fast path runs no
    middleware that would) and a foreign ``Origin`` (403)."""
    try:
        host = request.get_host()
    except DisallowedHost:
        raise ChannelError(400, "invalid Host header (ALLOWED_HOSTS)") from None
    origin = request.headers.get("Origin")
    if origin is not None:
        cors.check_origin(origin, request.scheme or "http", host)


async def identify(request: HttpRequest, channels: tuple[str, ...]) -> auth.Identity:
    """Who asks for ``channels``: the bearer of ``?token=``, or the authentication classes."""
    token = request.GET.get("token")
    if token is None:
        return await auth.authenticate(request)
    user = await tokens.redeem(tokens.verify(token, channels))
    return auth.Identity(user, "token")


def lifetime(identity: auth.Identity) -> tuple[float, str] | None:
    limit: tuple[float, str] | None = None
    age = limits.stream_age()
    if age is not None:
        limit = (age, "max age")
    if identity.session_expires is not None:
        left = (identity.session_expires - timezone.now()).total_seconds()
        if limit is None or left < limit[0]:
            limit = (max(left, 0.0), "session expired")
    return limit


async def accept(request: HttpRequest) -> Accepted:
    """Authenticate ``request`` and check its channels, or raise ``ChannelError``.

    ``request.auser`` must be set (Django's ``AuthenticationMiddleware`` sets it
    for the view; the fast path sets its own)."""
    from .stream import authorize, parse_channels

    started = time.monotonic()
    check_origin(request)
    requested = parse_channels(request.GET.getlist("channel"))
    identity = await identify(request, requested)
    channels = await authorize(identity.user, requested)
    slot = limits.reserve(identity.user)
    return Accepted(
        channels,
        identity.user,
        last_event_id(request),
        identity,
        slot,
        lifetime(identity),
        started,
    )
