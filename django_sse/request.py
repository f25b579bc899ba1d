"""What both doors do with a stream request before streaming: check the
origin, authenticate, check the channels and limits, read the resume position.
The Django view and the ASGI fast path call :func:`accept` with the same kind
of request, so they refuse and accept exactly the same requests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest

from .channels import ChannelError

if TYPE_CHECKING:
    from .auth import Identity
    from .limits import StreamSlot

CONTENT_TYPE = "text/event-stream; charset=utf-8"
STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    # GZipMiddleware skips responses that already declare an encoding; a
    # compressed event stream would be held back by the compressor.
    "Content-Encoding": "identity",
}
ERROR_CONTENT_TYPE = "text/plain; charset=utf-8"
#: Longest reason a refusal's body carries.
MAX_REASON = 300
# What a reason may carry as is: printable ASCII but markup's < > &.
_UNSAFE = re.compile(r"[^\x20-\x7e]|[<>&]")


def error_body(reason: str) -> str:
    """A refusal's one-line body: bounded, and whatever of the request it
    quotes (a hostile channel name, an origin) escaped, never raw markup."""
    text = reason[:MAX_REASON]
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


def error_headers(status: int) -> dict[str, str]:
    """Headers of every refusal of a stream request, on both doors."""
    from .limits import retry_after

    return {
        "Cache-Control": "no-store",
        # The body is text, and must never be sniffed as markup.
        "X-Content-Type-Options": "nosniff",
        **retry_after(status),
    }


@dataclass(frozen=True)
class Accepted:
    """A stream request that may go ahead."""

    channels: tuple[str, ...]
    user: Any
    last_event_id: str | None
    identity: Identity | None = None
    #: The stream's place under ``SSE_MAX_STREAMS_PER_USER`` (anonymous:
    #: ``SSE_MAX_STREAMS_PER_ADDRESS``), released when it ends.
    slot: StreamSlot | None = None
    #: The client's connection id (``?connection=``), for ``send_event(exclude=)``.
    connection: str | None = None


def last_event_id(request: HttpRequest) -> str | None:
    return request.headers.get("Last-Event-ID") or request.GET.get("lastEventId") or None


def own_origin(request: HttpRequest) -> str:
    try:
        return f"{request.scheme}://{request.get_host()}"
    except Exception:  # DisallowedHost: then no origin is our own
        return ""


async def accept(request: HttpRequest) -> Accepted:
    """Check the origin, authenticate ``request``, check its channels and the
    per-user (anonymous: per-address) limit, or raise ``ChannelError``.

    ``request.auser`` is used when set (Django's ``AuthenticationMiddleware``
    sets it for the view; the fast path sets its own)."""
    from . import cors, limits
    from .auth import authenticate
    from .exclude import stream_connection
    from .stream import authorize, parse_channels

    try:
        # Django's CommonMiddleware checks this for the view; the fast path runs none.
        request.get_host()
    except DisallowedHost:
        raise ChannelError(400, "invalid Host header (not in ALLOWED_HOSTS)") from None
    error = cors.origin_error(request.headers.get("Origin"), own_origin(request))
    if error is not None:
        raise ChannelError(403, error)
    requested = tuple(request.GET.getlist("channel"))
    if requested or "token" not in request.GET:
        parse_channels(requested)  # a malformed request costs no query
    connection = stream_connection(request)
    identity = await authenticate(request, requested)
    channels = await authorize(identity.user, requested or identity.token_channels or ())
    slot = limits.acquire(identity.owner, limits.client_address(request.META))
    return Accepted(channels, identity.user, last_event_id(request), identity, slot, connection)
