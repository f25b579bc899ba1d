"""The Django door to the stream core: ``include("django_sse.urls")``."""

from __future__ import annotations

import logging

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from .channels import ChannelError
from .dbthreads import release_connections
from .request import CONTENT_TYPE, ERROR_CONTENT_TYPE, STREAM_HEADERS, accept
from .stream import event_stream

logger = logging.getLogger("django_sse")


def error_response(status: int, reason: str) -> HttpResponse:
    response = HttpResponse(reason + "\n", status=status, content_type=ERROR_CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response


# GET only, so CSRF cannot apply; exempt so other methods get a clean 405.
@csrf_exempt
@require_GET
async def stream(request: HttpRequest) -> HttpResponseBase:
    """Serve ``GET ?channel=a&channel=b`` as ``text/event-stream``."""
    try:
        accepted = await accept(request)
    except ChannelError as exc:
        return error_response(exc.status, exc.reason)
    await release_connections()
    if not isinstance(request, ASGIRequest):
        logger.error("django_sse stream requested under WSGI; it needs an ASGI server")
        return error_response(
            500, "event streams need an ASGI server (daphne or uvicorn), not WSGI"
        )
    return StreamingHttpResponse(
        event_stream(accepted.channels, last_event_id=accepted.last_event_id, user=accepted.user),
        content_type=CONTENT_TYPE,
        headers=STREAM_HEADERS,
    )
