"""The Django door to the stream core: ``include("django_sse.urls")``."""

from __future__ import annotations

import logging

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

from . import cors, limits, tokens
from .auth import authenticate, authenticate_classes
from .channels import ChannelError
from .stream import authorize, event_stream, parse_channels

logger = logging.getLogger("django_sse")

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    # GZipMiddleware skips responses that already declare an encoding; a
    # compressed event stream would be held back by the compressor.
    "Content-Encoding": "identity",
}
CONTENT_TYPE = "text/event-stream; charset=utf-8"


def error_response(status: int, reason: str, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(reason + "\n", status=status, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        response[key] = value
    return response


def last_event_id(request: HttpRequest) -> str | None:
    return request.headers.get("Last-Event-ID") or request.GET.get("lastEventId") or None


def _own_origin(request: HttpRequest) -> str:
    try:
        return f"{request.scheme}://{request.get_host()}"
    except Exception:  # DisallowedHost: then no origin is our own
        return ""


def _cors(request: HttpRequest, methods: str) -> tuple[HttpResponseBase | None, dict[str, str]]:
    """A preflight answer or an origin refusal, else the CORS headers to add."""
    origin = request.headers.get("Origin")
    if request.method == "OPTIONS":
        status, headers, reason = cors.preflight(origin, request.headers, methods)
        return error_response(status, reason, headers) if reason else HttpResponse(
            status=status, headers=headers
        ), {}
    headers = cors.response_headers(origin)
    error = cors.origin_error(origin, _own_origin(request))
    if error is not None:
        return error_response(403, error, headers), headers
    if request.method not in methods.split(", "):
        response = HttpResponseNotAllowed(methods.split(", "))
        return response, headers
    return None, headers


# GET only, so CSRF cannot apply; exempt so other methods get a clean 405.
@csrf_exempt
async def stream(request: HttpRequest) -> HttpResponseBase:
    """Serve ``GET ?channel=a&channel=b`` as ``text/event-stream``."""
    early, headers = _cors(request, "GET")
    if early is not None:
        return early
    requested = tuple(request.GET.getlist("channel"))
    try:
        if requested or "token" not in request.GET:
            parse_channels(requested)  # a malformed request costs no query
        identity = await authenticate(request, requested)
        channels = await authorize(identity.user, requested or identity.token_channels or ())
        slot = limits.acquire(identity.owner)
    except ChannelError as exc:
        return error_response(exc.status, exc.reason, headers)
    if not isinstance(request, ASGIRequest):
        logger.error("django_sse stream requested under WSGI; it needs an ASGI server")
        return error_response(
            500, "event streams need an ASGI server (daphne or uvicorn), not WSGI"
        )
    response = StreamingHttpResponse(
        event_stream(channels, last_event_id=last_event_id(request), identity=identity, slot=slot),
        content_type=CONTENT_TYPE,
        headers={**STREAM_HEADERS, **headers},
    )
    return response


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> HttpResponse:
        return error_response(403, f"CSRF check failed: {reason}")


def _csrf_failure(request: HttpRequest) -> HttpResponseBase | None:
    check = _CsrfCheck(lambda r: HttpResponse())
    check.process_request(request)
    return check.process_view(request, lambda r: HttpResponse(), (), {})


# CSRF is enforced below for session users only: a client that sends its own
# credentials (a REST framework token) carries no ambient authority to abuse.
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
    value, expires = tokens.issue(identity.user, channels)
    response = JsonResponse({"token": value, "expires": expires.isoformat()}, headers=headers)
    response["Cache-Control"] = "no-store"
    return response
