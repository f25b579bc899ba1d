"""Signed stream tokens, for clients that cannot send a cookie or a header.

``EventSource`` cannot set headers, and a page on another origin may not be
able to send the session cookie. The token endpoint (``django_sse:token``)
gives an authenticated user a short-lived token bound to that user, a set of
channels and an expiry; the stream accepts it once as ``?token=``. Tokens are
signed with ``SECRET_KEY`` (``django.core.signing``), so nothing is stored
when one is issued; a used one is recorded in the database
(:class:`~django_sse.models.UsedStreamToken`) until it expires, which every
server process sees.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core import signing
from django.db import IntegrityError

from . import dbthreads
from .channels import ChannelError
from .conf import conf

SALT = "django_sse.tokens"


@dataclass(frozen=True)
class StreamToken:
    user_pk: str
    channels: tuple[str, ...]
    expires: float  # Unix time
    nonce: str


def issue(user: Any, channels: Iterable[str], max_age: float | None = None) -> tuple[str, float]:
    """A token for ``user`` to stream ``channels``, and its expiry (Unix time)."""
    expires = time.time() + (conf.SSE_TOKEN_MAX_AGE if max_age is None else max_age)
    payload = {
        "u": str(user.pk),
        "c": sorted(set(channels)),
        "e": round(expires, 3),
        "n": secrets.token_urlsafe(16),
    }
    return signing.dumps(payload, salt=SALT, compress=True), expires


def _forbidden(reason: str) -> ChannelError:
    return ChannelError(403, reason)


def verify(token: str, channels: Iterable[str]) -> StreamToken:
    """The token's content, if it is genuine, unexpired and covers ``channels``."""
    try:
        payload = signing.loads(token, salt=SALT)
        found = StreamToken(
            str(payload["u"]), tuple(payload["c"]), float(payload["e"]), str(payload["n"])
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise _forbidden("invalid stream token (tampered with, or not one of ours)") from None
    if found.expires <= time.time():
        raise _forbidden("stream token expired: request a new one")
    for name in channels:
        if name not in found.channels:
            raise _forbidden(f"stream token is not valid for channel {name!r}")
    return found


def _redeem(token: StreamToken) -> Any:
    from .models import UsedStreamToken

    user = get_user_model()._default_manager.filter(pk=token.user_pk).first()
    if user is None or not user.is_active:
        raise _forbidden("the user of this stream token is not active")
    now = datetime.now(UTC)
    UsedStreamToken.objects.filter(expires__lt=now).delete()
    try:
        UsedStreamToken.objects.create(
            nonce=token.nonce, expires=datetime.fromtimestamp(token.expires, UTC)
        )
    except IntegrityError:
        raise _forbidden("stream token already used: request a new one") from None
    return user


async def redeem(token: StreamToken) -> Any:
    """Mark ``token`` used and return its user; ``ChannelError(403)`` if used before."""
    return await dbthreads.run(_redeem, token, retry=False)
