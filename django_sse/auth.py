"""Who is asking: the classes of ``SSE_AUTHENTICATION_CLASSES``, tried in order.

A class is either :class:`SessionAuthentication` (the Django session, the
default) or any Django REST framework authentication class (``TokenAuthentication``,
``BasicAuthentication``, a JWT class...). DRF classes are sync: they run on the
store threads with a DRF ``Request`` wrapping the request. The first class
that returns a user wins; none means anonymous. Both doors call
:func:`authenticate` with a plain ``HttpRequest``, so no middleware is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from django.utils.module_loading import import_string

from . import dbthreads
from .channels import ChannelError
from .conf import conf

SESSION = "django_sse.auth.SessionAuthentication"


@dataclass(frozen=True)
class Identity:
    """An authenticated (or anonymous) requester and how it was recognised."""

    user: Any
    #: Dotted path of the class that authenticated, ``"token"``, or ``None``.
    via: str | None = None
    #: Set when the session authenticated: streams close when it expires.
    session_expires: datetime | None = None
    session_key: str | None = None


class SessionAuthentication:
    """The Django session cookie, as ``AuthenticationMiddleware`` reads it."""

    async def aauthenticate(self, request: Any) -> tuple[Any, None] | None:
        auser = getattr(request, "auser", None)
        if auser is None:
            return None
        user = await auser()
        return (user, None) if user.is_authenticated else None


@cache
def _load(path: str) -> type:
    cls: type = import_string(path)
    return cls


def _drf_authenticate(authenticator: Any, request: Any) -> tuple[Any, Any] | None:
    from rest_framework.exceptions import APIException
    from rest_framework.request import Request

    try:
        result: tuple[Any, Any] | None = authenticator.authenticate(Request(request))
    except APIException as exc:
        raise ChannelError(403, f"authentication failed: {exc.detail}") from None
    return result


async def authenticate(request: Any) -> Identity:
    """The :class:`Identity` of ``request``; ``ChannelError(403)`` for bad credentials."""
    for path in conf.SSE_AUTHENTICATION_CLASSES:
        authenticator = _load(path)()
        if hasattr(authenticator, "aauthenticate"):
            result = await authenticator.aauthenticate(request)
        else:
            result = await dbthreads.run(_drf_authenticate, authenticator, request, retry=False)
        if result is None:
            continue
        user = result[0]
        if isinstance(authenticator, SessionAuthentication):
            expires = await session_expiry(request.session)
            return Identity(user, path, expires, request.session.session_key)
        return Identity(user, path)
    return Identity(AnonymousUser())


def _stored_expiry(session: Any) -> datetime | None:
    model = session.get_model_class()
    row = model.objects.filter(session_key=session.session_key).values("expire_date").first()
    return row["expire_date"] if row else None


async def session_expiry(session: Any) -> datetime:
    """When ``session`` expires: the database row's expiry (``db`` and ``cached_db``
    engines), else its own expiry if set, else ``SESSION_COOKIE_AGE`` from now."""
    if hasattr(session, "get_model_class") and session.session_key:
        stored = await dbthreads.run(_stored_expiry, session)
        if stored is not None:
            return stored
    if await session.aget("_session_expiry") is not None:
        expires: datetime = await session.aget_expiry_date()
        return expires
    return timezone.now() + timedelta(seconds=session.get_session_cookie_age())
