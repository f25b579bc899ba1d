"""The Django door to the stream core: ``include("django_sse.urls")``."""

from __future__ import annotations

import logging

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from . import cors
from .channels import ChannelError
from .dbthreads import release_connections
from .request import CONTENT_TYPE, STREAM_HEADERS, accept, error_response
from .tokenview import token

__all__ = ["error_response", "stream", "token"]

logger = logging.getLogger("django_sse")


# GET (and the CORS preflight) only, so CSRF cannot apply; exempt so other
# methods get a clean 405.
@csrf_exempt
@require_http_methods(["GET", "OPTIONS"])
async def stream(request: HttpRequest) -> HttpResponseBase:
    """Serve ``GET ?channel=a&channel=b`` as ``text/event-stream``."""
    if request.method == "OPTIONS":
        status, headers, reason = cors.preflight(request.headers)
        if status != 204:
            return error_response(status, reason)
        return HttpResponse(status=204, headers=headers)
    cors_headers = cors.response_headers(request.headers.get("Origin"))
    try:
        accepted = await accept(request)
    except ChannelError as exc:
        return error_response(exc.status, exc.reason, cors_headers)
    await release_connections()
    if not isinstance(request, ASGIRequest):
        logger.error("django_sse stream requested under WSGI; it needs an ASGI server")
        return error_response(
            500, "event streams need an ASGI server (daphne or uvicorn), not WSGI"
        )
    return StreamingHttpResponse(
        accepted.stream(),
        content_type=CONTENT_TYPE,
        headers={**STREAM_HEADERS, **cors_headers},
    )
