"""The Django door to the stream core: ``include("django_sse.urls")``."""

from __future__ import annotations

import logging

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from .channels import ChannelError
from .dbthreads import release_connections
from .stream import authorize, event_stream

logger = logging.getLogger("django_sse")

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    # GZipMiddleware skips responses that already declare an encoding; a
    # compressed event stream would be held back by the compressor.
    "Content-Encoding": "identity",
}
CONTENT_TYPE = "text/event-stream; charset=utf-8"


def error_response(status: int, reason: str) -> HttpResponse:
    response = HttpResponse(reason + "\n", status=status, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def last_event_id(request: HttpRequest) -> str | None:
    return request.headers.get("Last-Event-ID") or request.GET.get("lastEventId") or None


# GET only, so CSRF cannot apply; exempt so other methods get a clean 405.
@csrf_exempt
@require_GET
async def stream(request: HttpRequest) -> HttpResponseBase:
    """Serve ``GET ?channel=a&channel=b`` as ``text/event-stream``."""
    user = await request.auser()
    try:
        channels = await authorize(user, request.GET.getlist("channel"))
    except ChannelError as exc:
        return error_response(exc.status, exc.reason)
    await release_connections()
    if not isinstance(request, ASGIRequest):
        logger.error("django_sse stream requested under WSGI; it needs an ASGI server")
        return error_response(
            500, "event streams need an ASGI server (daphne or uvicorn), not WSGI"
        )
    response = StreamingHttpResponse(
        event_stream(channels, last_event_id=last_event_id(request), user=user),
        content_type=CONTENT_TYPE,
        headers=STREAM_HEADERS,
    )
    return response
