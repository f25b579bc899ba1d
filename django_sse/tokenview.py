"""The token endpoint: ``POST`` to ``django_sse:token`` for a stream token.

Authenticated like the stream (``SSE_AUTHENTICATION_CLASSES``). When the
session authenticated the request, Django's CSRF check applies, as in DRF: a
page on another site cannot make the user's browser fetch a token (which the
page could then use). Header-authenticated clients (``Authorization: Token``)
carry no ambient credential, so they need no CSRF token.
"""

from __future__ import annotations

from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import auth, tokens
from .channels import ChannelError
from .request import error_response


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> str:  # type: ignore[override]
        return reason


def csrf_failure(request: HttpRequest) -> str | None:
    """Why ``request`` fails Django's CSRF check, or ``None``."""
    check = _CsrfCheck(lambda r: HttpResponse())
    check.process_request(request)
    reason = check.process_view(request, lambda r: HttpResponse(), (), {})
    return reason if isinstance(reason, str) else None


# The CSRF check is ours (session-authenticated requests only), not the middleware's.
@csrf_exempt
@require_POST
async def token(request: HttpRequest) -> HttpResponse:
    """Issue ``{"token": ..., "expires": ...}`` for ``channel=a&channel=b``."""
    from .stream import authorize

    try:
        identity = await auth.authenticate(request)
        if identity.via == auth.SESSION:
            reason = await sync_to_async(csrf_failure)(request)
            if reason is not None:
                raise ChannelError(403, f"CSRF check failed: {reason}")
        if not identity.user.is_authenticated:
            raise ChannelError(403, "stream tokens are for authenticated users: log in first")
        raw = request.POST.getlist("channel") or request.GET.getlist("channel")
        channels = await authorize(identity.user, raw)
    except ChannelError as exc:
        return error_response(exc.status, exc.reason)
    value, expires = tokens.issue(identity.user, channels)
    response = JsonResponse(
        {"token": value, "expires": datetime.fromtimestamp(expires, UTC).isoformat()}
    )
    response["Cache-Control"] = "no-store"
    return response
