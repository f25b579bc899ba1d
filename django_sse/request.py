"""What both doors do with a stream request before streaming: authenticate,
check the channels, read the resume position. The Django view and the ASGI
fast path call :func:`accept` with the same kind of request, so they refuse
and accept exactly the same requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

CONTENT_TYPE = "text/event-stream; charset=utf-8"
STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    # GZipMiddleware skips responses that already declare an encoding; a
    # compressed event stream would be held back by the compressor.
    "Content-Encoding": "identity",
}
ERROR_CONTENT_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Accepted:
    """A stream request that may go ahead."""

    channels: tuple[str, ...]
    user: Any
    last_event_id: str | None


def last_event_id(request: HttpRequest) -> str | None:
    return request.headers.get("Last-Event-ID") or request.GET.get("lastEventId") or None


async def accept(request: HttpRequest) -> Accepted:
    """Authenticate ``request`` and check its channels, or raise ``ChannelError``.

    ``request.auser`` must be set (Django's ``AuthenticationMiddleware`` sets it
    for the view; the fast path sets its own)."""
    from .stream import authorize

    user = await request.auser()
    channels = await authorize(user, request.GET.getlist("channel"))
    return Accepted(channels, user, last_event_id(request))
