"""The Django door to the stream core: ``include("django_sse.urls")``."""

from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_not_required
from django.core.handlers.asgi import ASGIRequest
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    JsonResponse,
    StreamingHttpResponse,
)
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from . import cors, tokens
from .auth import authenticate_classes
from .channels import ChannelError
from .dbthreads import release_connections
from .request import (
    CONTENT_TYPE,
    ERROR_CONTENT_TYPE,
    STREAM_HEADERS,
    accept,
    error_body,
    error_headers,
    own_origin,
)
from .stream import authorize, event_stream

logger = logging.getLogger("django_sse")


def error_response(status: int, reason: str, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(error_body(reason), status=status, content_type=ERROR_CONTENT_TYPE)
    for key, value in {**error_headers(status), **(headers or {})}.items():
        response[key] = value
    return response


def _cors(request: HttpRequest, methods: str) -> tuple[HttpResponseBase | None, dict[str, str]]:
    """A preflight answer or a refusal, else the CORS headers to add."""
    origin = request.headers.get("Origin")
    if request.method == "OPTIONS":
        status, headers, reason = cors.preflight(origin, request.headers, methods)
        if reason:
            return error_response(status, reason, headers), {}
        return HttpResponse(status=status, headers=headers), {}
    headers = cors.response_headers(origin)
    error = cors.origin_error(origin, own_origin(request))
    if error is not None:
        return error_response(403, error, headers), headers
    if request.method not in methods.split(", "):
        return HttpResponseNotAllowed(methods.split(", ")), headers
    return None, headers


# GET only, so CSRF cannot apply; exempt so other methods get a clean 405.
# The stream does its own authentication and answers 403, never a login
# redirect, so LoginRequiredMiddleware must let it through.
@login_not_required
@csrf_exempt
async def stream(request: HttpRequest) -> HttpResponseBase:
    """Serve ``GET ?channel=a&channel=b`` as ``text/event-stream``."""
    early, headers = _cors(request, "GET")
    if early is not None:
        return early
    try:
        accepted = await accept(request)
    except ChannelError as exc:
        return error_response(exc.status, exc.reason, headers)
    await release_connections()
    if not isinstance(request, ASGIRequest):
        logger.error("django_sse stream requested under WSGI; it needs an ASGI server")
        return error_response(
            500, "event streams need an ASGI server (daphne or uvicorn), not WSGI"
        )
    return StreamingHttpResponse(
        event_stream(
            accepted.channels,
            last_event_id=accepted.last_event_id,
            identity=accepted.identity,
            slot=accepted.slot,
            door="view",
            connection=accepted.connection,
        ),
        content_type=CONTENT_TYPE,
        headers={**STREAM_HEADERS, **headers},
    )


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> HttpResponse:
        return error_response(403, f"CSRF check failed: {reason}")


def _csrf_failure(request: HttpRequest) -> HttpResponseBase | None:
    check = _CsrfCheck(lambda r: HttpResponse())
    check.process_request(request)
    return check.process_view(request, lambda r: HttpResponse(), (), {})


# CSRF is enforced below for session users only: a client that sends its own
# credentials (a REST framework token) carries no ambient authority to abuse.
# Anonymous requests get a 403 with the reason, never a login redirect.
@login_not_required
@csrf_exempt
async def token(request: HttpRequest) -> HttpResponseBase:
    """``POST channel=a&channel=b``: a short-lived, single-use stream token."""
    early, headers = _cors(request, "POST")
    if early is not None:
        return early
    try:
        identity = await authenticate_classes(request)
        if identity.via == "session":
            failure = _csrf_failure(request)
            if failure is not None:
                for key, value in headers.items():
                    failure[key] = value
                return failure
        if identity.owner is None:
            raise ChannelError(403, "anonymous users cannot get stream tokens: log in first")
        channels = await authorize(identity.user, request.POST.getlist("channel"))
    except ChannelError as exc:
        return error_response(exc.status, exc.reason, headers)
    value, expires = await tokens.aissue(identity.user, channels, session_key=identity.session_key)
    response = JsonResponse({"token": value, "expires": expires.isoformat()}, headers=headers)
    response["Cache-Control"] = "no-store"
    return response
