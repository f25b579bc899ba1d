"""Signed stream tokens, for clients that cannot send a cookie or a header.

``EventSource`` on another origin, or a native client, asks the ``token/``
endpoint for a token and opens ``?token=...``. A token is signed with
``SECRET_KEY`` (``django.core.signing``), names the user, the channels and an
expiry. Its nonce is recorded in the database (``StreamToken``) when it is
given out, with the key of the session that asked for it (or the keyed hash
of a REST framework Token, ``sessions.credential``), so every process sees
that it is used once, and refuses it once that session or Token has ended. The
token itself carries no session key: it is signed, not encrypted, and URLs end
up in logs.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core import signing

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


def issue(
    user: Any, channels: tuple[str, ...], *, session_key: str | None = None
) -> tuple[str, datetime]:
    """A new token for ``user`` on ``channels``, and when it expires.

    With ``session_key`` (the session that asks for it), the token is refused
    and its stream closed once that session ends. Writes a row: sync code only."""
    from .models import StreamToken

    expires = time.time() + conf.SSE_TOKEN_MAX_AGE
    nonce = secrets.token_urlsafe(16)
    when = datetime.fromtimestamp(expires, UTC)
    StreamToken.objects.create(nonce=nonce, expires=when, session_key=session_key or "")
    prune()
    payload = {"u": str(user.pk), "c": list(channels), "n": nonce, "e": expires}
    return signing.dumps(payload, salt=SALT), when


async def aissue(
    user: Any, channels: tuple[str, ...], *, session_key: str | None = None
) -> tuple[str, datetime]:
    """:func:`issue` from async code."""
    return await dbthreads.run(lambda: issue(user, channels, session_key=session_key), retry=False)


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

    # One UPDATE: of two streams starting with the same token, one wins.
    return StreamToken.objects.filter(nonce=grant.nonce, used=False).update(used=True) == 1


def _issuer(grant: Grant) -> str | None:
    from .models import StreamToken

    row = StreamToken.objects.filter(nonce=grant.nonce).values("session_key", "used").first()
    if row is None:
        raise TokenError("unknown token: request a new one from the token endpoint")
    if row["used"]:
        raise TokenError(USED)
    return row["session_key"] or None


USED = "token already used: request a new one for each stream"


async def issuer(grant: Grant) -> str | None:
    """The key of the session (or the REST framework Token's credential) that
    asked for ``grant`` (``None``: another credential); ``TokenError`` if the
    token is unknown or used already."""
    return await dbthreads.run(_issuer, grant)


async def consume(grant: Grant) -> None:
    """Record that ``grant`` was used; raise ``TokenError`` if it already was."""
    if not await dbthreads.run(_record_use, grant, retry=False):
        raise TokenError(USED)


def prune() -> int:
    """Forget tokens that have expired (they can no longer be used or replayed)."""
    from .models import StreamToken

    deleted, _ = StreamToken.objects.filter(expires__lt=datetime.now(UTC)).delete()
    return deleted
