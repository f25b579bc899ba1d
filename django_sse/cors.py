"""Cross-origin access to the stream and token endpoints.

Only origins listed in ``SSE_CORS_ALLOWED_ORIGINS`` get CORS headers, matched
exactly on the ``Origin`` header (never ``Referer``), and the allowed origin is
echoed back: never ``*``, which browsers refuse with credentials anyway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .conf import conf

#: scheme://host[:port], nothing after.
ORIGIN_RE = re.compile(
    r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)
#: Request headers a cross-origin stream or token client may send.
ALLOWED_HEADERS = ("last-event-id", "authorization", "x-csrftoken", "content-type")
PREFLIGHT_MAX_AGE = "600"


def normalize(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def is_allowed(origin: str | None) -> bool:
    if not origin:
        return False
    allowed = {normalize(o) for o in conf.SSE_CORS_ALLOWED_ORIGINS}
    return normalize(origin) in allowed


def origin_error(origin: str | None, own_origin: str) -> str | None:
    """Why a request from ``origin`` is refused, or ``None``.

    No ``Origin`` (a same-origin GET, curl, a native client) and our own origin
    pass; any other origin must be in the allowlist."""
    if not origin or normalize(origin) == normalize(own_origin) or is_allowed(origin):
        return None
    return f"origin {origin[:100]!r} is not allowed (SSE_CORS_ALLOWED_ORIGINS)"


def response_headers(origin: str | None) -> dict[str, str]:
    """CORS headers for an actual (non-preflight) response."""
    headers = {"Vary": "Origin"}
    if origin and is_allowed(origin):
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
        # Not a CORS-safelisted header: without this a page on an allowed
        # origin cannot read how long a 429 asks it to wait.
        headers["Access-Control-Expose-Headers"] = "Retry-After"
    return headers


def preflight(
    origin: str | None, request_headers: Mapping[str, str], methods: str
) -> tuple[int, dict[str, str], str]:
    """Answer an ``OPTIONS`` preflight: status, headers, and a one-line body."""
    if not origin or not is_allowed(origin):
        return (
            403,
            {"Vary": "Origin"},
            f"origin {str(origin)[:100]!r} is not allowed (SSE_CORS_ALLOWED_ORIGINS)",
        )
    method = request_headers.get("Access-Control-Request-Method", "")
    if method and method not in methods.split(", "):
        return 403, {"Vary": "Origin"}, f"method {method[:20]!r} is not allowed"
    asked = [
        h.strip().lower()
        for h in request_headers.get("Access-Control-Request-Headers", "").split(",")
        if h.strip()
    ]
    refused = [h for h in asked if h not in ALLOWED_HEADERS]
    if refused:
        return 403, {"Vary": "Origin"}, f"header {refused[0][:40]!r} is not allowed"
    headers = response_headers(origin)
    headers.update(
        {
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        }
    )
    return 204, headers, ""
