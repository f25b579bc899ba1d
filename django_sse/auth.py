"""Who is reading: the Django session, Django REST framework classes, or a token.

``SSE_AUTHENTICATION_CLASSES`` lists the classes tried in order; the first that
names a user wins, else the reader is anonymous. A ``?token=`` from the token
endpoint is checked before them and names its own user. Whatever the way in,
the same channel checks follow (``stream.authorize``).

:func:`authenticate` takes a Django ``HttpRequest`` because REST framework's
classes need one; a door without Django's middleware builds an ``ASGIRequest``
from its scope, and :class:`SessionAuthentication` loads the session itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.utils.module_loading import import_string

from . import dbthreads, sessions, tokens
from .channels import ChannelError
from .conf import conf

SESSION = "django_sse.auth.SessionAuthentication"


@dataclass(frozen=True)
class Identity:
    """The reader of a stream, and what its access hangs on."""

    user: Any
    #: ``"session"``, ``"token"``, or the name of the REST framework class.
    via: str = "anonymous"
    session_key: str | None = None
    #: Epoch seconds at which the session expires and the stream closes.
    expires_at: float | None = None
    #: The channels a token allows (``None``: not a token).
    token_channels: tuple[str, ...] | None = None
    #: ``time.monotonic()`` when authentication began: a revocation after it
    #: closes the stream even if it arrived before the stream subscribed.
    since: float | None = None

    @property
    def owner(self) -> str | None:
        """The key streams of this user are counted and revoked by."""
        return str(self.user.pk) if self.user.is_authenticated else None


ANONYMOUS = Identity(AnonymousUser())


def attach_session(request: HttpRequest) -> Any:
    """``request.session``, loaded from the cookie as ``SessionMiddleware`` would
    when no middleware ran (the fast path)."""
    session = getattr(request, "session", None)
    if session is None:
        engine = import_module(settings.SESSION_ENGINE)
        session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
        request.session = session
    return session


class SessionAuthentication:
    """The Django session cookie (``SessionMiddleware`` and ``AuthenticationMiddleware``)."""

    async def aauthenticate(self, request: HttpRequest) -> Identity | None:
        from django.contrib.auth import aget_user

        session = attach_session(request)
        if not session.session_key:
            return None  # no cookie: no query
        user = await request.auser() if hasattr(request, "auser") else await aget_user(request)
        if not user.is_authenticated:
            return None
        expires_at = await session_expires_at(session)
        return Identity(user, "session", session.session_key, expires_at)


def _stored_expiry(session: Any) -> float | None:
    model = session.get_model_class()
    row = model.objects.filter(session_key=session.session_key).values("expire_date").first()
    return row["expire_date"].timestamp() if row else None


async def session_expires_at(session: Any) -> float:
    """Epoch seconds at which ``session`` expires.

    The database engines (``db``, ``cached_db``) keep the real expiry in the
    session's row, set when the session was last saved; the session itself
    only knows its age from now. Other engines: that age."""
    if hasattr(session, "get_model_class"):
        stored = await dbthreads.run(_stored_expiry, session)
        if stored is not None:
            return stored
    age: int = await session.aget_expiry_age()
    return time.time() + age


def _drf_request(request: HttpRequest, authenticator: Any) -> Any:
    from rest_framework.request import Request

    return Request(request, authenticators=[authenticator])


def _answers_none(authenticator: Any, request: HttpRequest) -> bool:
    """Whether REST framework's own ``TokenAuthentication`` or
    ``BasicAuthentication`` (not a subclass's override) would answer ``None``
    for ``request``: they read only the ``Authorization`` header. Asking them
    costs a thread hop per stream, which a resume storm of anonymous or
    session streams need not pay."""
    if request.META.get("HTTP_AUTHORIZATION"):
        return False
    try:
        from rest_framework.authentication import BasicAuthentication, TokenAuthentication
    except ImportError:
        return False
    # The function the instance would call: a subclass's override, or one set
    # on the instance itself, is asked as before.
    method = getattr(getattr(authenticator, "authenticate", None), "__func__", None)
    return method is not None and method in (
        TokenAuthentication.authenticate,
        BasicAuthentication.authenticate,
    )


def _drf_authenticate(authenticator: Any, request: HttpRequest) -> Any:
    from rest_framework import exceptions

    if not hasattr(request, "user") and hasattr(request, "session"):
        # A door without AuthenticationMiddleware: REST framework's
        # SessionAuthentication reads ``request.user``. This is a worker thread.
        from django.contrib.auth import get_user

        request.user = get_user(request)  # type: ignore[arg-type]
    try:
        return authenticator.authenticate(_drf_request(request, authenticator))
    except exceptions.APIException as exc:
        # Any refusal is a 403 here: the stream's errors are 400/403/404/429.
        raise ChannelError(403, f"authentication failed: {exc.detail}") from None


def _drf_session(authenticator: Any, request: HttpRequest, auth: Any) -> str | None:
    """The session behind REST framework's SessionAuthentication, so logout finds
    it; or the :func:`sessions.credential` of an authtoken ``Token``, so deleting
    the Token ends the stream. Other classes (JWT, Basic): the user only."""
    from django.apps import apps
    from rest_framework.authentication import SessionAuthentication as DRFSession
    from rest_framework.authentication import TokenAuthentication

    if isinstance(authenticator, DRFSession):
        return getattr(getattr(request, "session", None), "session_key", None)
    if isinstance(authenticator, TokenAuthentication) and apps.is_installed(
        "rest_framework.authtoken"
    ):
        from rest_framework.authtoken.models import Token

        if isinstance(auth, Token) and isinstance(getattr(auth, "key", None), str):
            return sessions.credential(auth.key)
    return None


async def authenticate_classes(request: HttpRequest) -> Identity:
    """Try ``SSE_AUTHENTICATION_CLASSES`` in order; anonymous if none names a user."""
    for path in conf.SSE_AUTHENTICATION_CLASSES:
        authenticator = import_string(path)()
        if hasattr(authenticator, "aauthenticate"):
            found = await authenticator.aauthenticate(request)
            if found is not None:
                return found  # type: ignore[no-any-return]
            continue
        if _answers_none(authenticator, request):
            continue
        result = await dbthreads.run(_drf_authenticate, authenticator, request)
        if result is not None and result[0] is not None and result[0].is_authenticated:
            return Identity(
                result[0],
                type(authenticator).__name__,
                _drf_session(authenticator, request, result[1]),
            )
    return ANONYMOUS


def _token_user(pk: str) -> Any:
    from django.contrib.auth import get_user_model

    User = get_user_model()
    try:
        return User._default_manager.get(pk=pk)
    except (User.DoesNotExist, ValueError):
        return None


async def authenticate(request: HttpRequest, requested: tuple[str, ...] = ()) -> Identity:
    """The reader of a stream request, or ``ChannelError`` (403).

    With ``?token=``, the token names the user and its channels; a request that
    is also authenticated otherwise must be the same user."""
    since = time.monotonic()
    identity = await _authenticate(request, requested)
    return replace(identity, since=since)


async def _authenticate(request: HttpRequest, requested: tuple[str, ...]) -> Identity:
    token = request.GET.get("token")
    if token is None:
        return await authenticate_classes(request)
    grant = tokens.verify(token, requested)
    other = await authenticate_classes(request)
    if other.owner is not None and other.owner != grant.user_pk:
        raise tokens.TokenError("token was issued to another user")
    user = await dbthreads.run(_token_user, grant.user_pk)
    if user is None or not user.is_active:
        raise tokens.TokenError("token user no longer exists or is inactive")
    key = await tokens.issuer(grant)
    expires_at = None
    if key is not None:
        # The stream lasts as long as the session that asked for the token:
        # logout, a password change or its expiry end both.
        reason, key, expires_at = await dbthreads.run(sessions.check_session, key, grant.user_pk)
        if reason is not None and sessions.is_credential(key):
            raise tokens.TokenError(
                "token refused: the REST framework token that requested it was deleted"
            )
        if reason is not None:
            raise tokens.TokenError(
                f"token refused: the session that requested it has ended ({reason}); log in again"
            )
    await tokens.consume(grant)
    return Identity(user, "token", key, expires_at, token_channels=grant.channels)
