"""Cross-origin streams: an allowlist of origins, matched on ``Origin`` only.

A page on another origin opens ``new EventSource(url, {withCredentials: true})``;
the browser sends its ``Origin`` and reads the stream only if the response names
that origin in ``Access-Control-Allow-Origin`` with credentials allowed. A
reconnecting ``EventSource`` sends ``Last-Event-ID``, which is CORS-safe only
for short, plain values; otherwise the browser sends a preflight ``OPTIONS``
first, answered by :func:`preflight`. ``Referer`` is never consulted, ``*`` is
never sent, and an ``Origin`` that is neither this site nor allowed is refused
before anything else happens, so another site's page cannot even start a
stream with the user's cookies.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from .channels import ChannelError
from .conf import conf

#: Request headers a cross-origin stream may send (besides CORS-safe ones).
ALLOWED_HEADERS = ("Last-Event-ID", "Authorization", "Cache-Control")
PREFLIGHT_MAX_AGE = 600


def allowed(origin: str | None) -> bool:
    # Exact, case-sensitive match of the serialized origin; "null" (sandboxed
    # frames, file: pages) is an origin anyone can claim, so it never matches.
    return bool(origin) and origin != "null" and origin in conf.SSE_CORS_ALLOWED_ORIGINS


def same_origin(origin: str, scheme: str, host: str) -> bool:
    parts = urlsplit(origin)
    return parts.scheme == scheme and parts.netloc.lower() == host.lower()


def check_origin(origin: str | None, scheme: str, host: str) -> None:
    """Refuse (403) a request from a page neither on this site nor allowed."""
    if origin is None or allowed(origin) or same_origin(origin, scheme, host):
        return
    raise ChannelError(
        403, f"origin {origin[:200]!r} may not open streams (SSE_CORS_ALLOWED_ORIGINS)"
    )


def response_headers(origin: str | None) -> dict[str, str]:
    """The CORS headers of a stream response (or error) to a page of ``origin``."""
    if not allowed(origin):
        return {}
    assert origin is not None
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


def preflight(headers: Mapping[str, str]) -> tuple[int, dict[str, str], str]:
    """Answer a preflight ``OPTIONS``: status, headers and a one-line reason."""
    origin = headers.get("Origin")
    if not allowed(origin):
        return 403, {}, "origin not allowed to open streams (SSE_CORS_ALLOWED_ORIGINS)"
    method = headers.get("Access-Control-Request-Method", "")
    if method != "GET":
        return 403, {}, f"method {method[:20]!r} not allowed: streams are GET only"
    requested = headers.get("Access-Control-Request-Headers", "")
    permitted = {h.lower() for h in ALLOWED_HEADERS}
    for name in filter(None, (h.strip().lower() for h in requested.split(","))):
        if name not in permitted:
            return 403, {}, f"request header {name[:50]!r} not allowed on streams"
    result = response_headers(origin)
    result["Access-Control-Allow-Methods"] = "GET"
    result["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_HEADERS)
    result["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return 204, result, ""
