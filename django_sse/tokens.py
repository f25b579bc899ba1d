"""Signed stream tokens, for clients that cannot send a cookie or a header.

``EventSource`` on another origin, or a native client, asks the ``token/``
endpoint for a token and opens ``?token=...``. A token is signed with
``SECRET_KEY`` (``django.core.signing``), names the user, the channels and an
expiry, and is usable once: its nonce is recorded in the database
(``StreamToken``) when a stream starts with it, so every process sees the use.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core import signing
from django.db import IntegrityError, transaction

from . import dbthreads
from .channels import ChannelError
from .conf import conf

SALT = "django_sse.stream-token"
#: Longer query values are not ours: refused before any work.
MAX_TOKEN_LENGTH = 2048


class TokenError(ChannelError):
    """A token that cannot start a stream: always a 403 saying why."""

    def __init__(self, reason: str) -> None:
        super().__init__(403, reason)


@dataclass(frozen=True)
class Grant:
    """What a verified token allows."""

    user_pk: str
    channels: tuple[str, ...]
    nonce: str
    expires: float


def issue(user: Any, channels: tuple[str, ...]) -> tuple[str, datetime]:
    """A new token for ``user`` on ``channels``, and when it expires."""
    expires = time.time() + conf.SSE_TOKEN_MAX_AGE
    payload = {"u": str(user.pk), "c": list(channels), "n": secrets.token_urlsafe(16), "e": expires}
    return signing.dumps(payload, salt=SALT), datetime.fromtimestamp(expires, UTC)


def verify(token: str, requested: tuple[str, ...]) -> Grant:
    """Check signature, expiry and channels; raise ``TokenError`` saying which failed.

    ``requested`` empty means the token's own channels. Use is not recorded:
    call :func:`consume` once the stream is otherwise allowed."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("invalid token: tampered or malformed")
    try:
        data = signing.loads(token, salt=SALT)
        grant = Grant(str(data["u"]), tuple(data["c"]), str(data["n"]), float(data["e"]))
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise TokenError("invalid token: tampered or malformed") from None
    if time.time() >= grant.expires:
        raise TokenError("token expired: request a new one from the token endpoint")
    for name in requested:
        if name not in grant.channels:
            raise TokenError(f"token is not valid for channel {name[:100]!r}")
    return grant


def _record_use(grant: Grant) -> bool:
    from .models import StreamToken

    expires = datetime.fromtimestamp(grant.expires, UTC)
    try:
        with transaction.atomic():
            StreamToken.objects.create(nonce=grant.nonce, expires=expires)
    except IntegrityError:
        return False
    prune()
    return True


async def consume(grant: Grant) -> None:
    """Record that ``grant`` was used; raise ``TokenError`` if it already was."""
    if not await dbthreads.run(_record_use, grant, retry=False):
        raise TokenError("token already used: request a new one for each stream")


def prune() -> int:
    """Forget used tokens that have expired (they can no longer be replayed)."""
    from .models import StreamToken

    deleted, _ = StreamToken.objects.filter(expires__lt=datetime.now(UTC)).delete()
    return deleted
