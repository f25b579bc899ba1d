"""Publishing "to others": skip the stream of the tab that made the change.

The JS helper gives each tab a random connection id, sends it on the stream
URL (``?connection=``) and on its ``fetch`` and htmx requests (the
``X-SSE-Connection`` header). ``send_event(..., exclude=request)`` then skips
the one stream whose id and user are the request's, in every process.

Neither the id nor the user alone is enough: a stream is named by a keyed
hash (``SECRET_KEY``) of its user and its id, and so is a request, so a
request can only ever mute a stream of its own user, even with an id it
learnt. Nothing but that hash crosses the channel layer.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from django.utils.crypto import salted_hmac

from .channels import ChannelError

HEADER = "X-SSE-Connection"
QUERY = "connection"
#: What the JS helper sends (22 characters of base64url); a little leeway.
CONNECTION_ID_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "django_sse_exclude", default=None
)


def _key(owner: str | None, connection_id: str) -> str:
    return salted_hmac("django_sse.exclude", f"{owner or ''}\x00{connection_id}").hexdigest()[:32]


def stream_connection(request: Any) -> str | None:
    """The ``?connection=`` id of a stream request; ``ChannelError(400)`` if malformed."""
    value = request.GET.get(QUERY)
    if value is None or value == "":
        return None
    if not CONNECTION_ID_RE.fullmatch(value):
        raise ChannelError(400, "malformed connection id: 16 to 64 of A-Z a-z 0-9 _ -")
    return str(value)


def stream_key(owner: str | None, connection_id: str | None) -> str | None:
    """What a stream of ``owner`` opened with ``connection_id`` is excluded by."""
    return None if connection_id is None else _key(owner, connection_id)


def _request_id(request: Any) -> str | None:
    headers = getattr(request, "headers", None)
    if headers is None:
        raise TypeError(
            f"exclude= takes the HttpRequest that made the change, got {type(request).__name__}"
        )
    value = headers.get(HEADER)
    # A malformed header excludes nothing, like a missing one: the change
    # still reaches every stream, which is the safe side.
    if not isinstance(value, str) or not CONNECTION_ID_RE.fullmatch(value):
        return None
    return value


def _owner(user: Any) -> str | None:
    return str(user.pk) if user is not None and user.is_authenticated else None


def request_key(request: Any) -> str | None:
    """The exclusion of ``request`` (sync code: reads ``request.user``)."""
    if request is None:
        return _current.get()
    connection_id = _request_id(request)
    if connection_id is None:
        return None
    return _key(_owner(getattr(request, "user", None)), connection_id)


async def arequest_key(request: Any) -> str | None:
    """Async twin of :func:`request_key` (``await request.auser()``)."""
    if request is None:
        return _current.get()
    connection_id = _request_id(request)
    if connection_id is None:
        return None
    auser = getattr(request, "auser", None)
    user = await auser() if auser is not None else getattr(request, "user", None)
    return _key(_owner(user), connection_id)


@contextmanager
def excluding(request: Any) -> Iterator[None]:
    """Every ``send_event`` in the block (model hooks, ``notify()``) skips the
    stream of the tab that sent ``request``::

        with excluding(request):
            ticket.save()   # the hook's event reaches every tab but this one
    """
    with excluding_key(request_key(request)):
        yield


@contextmanager
def excluding_key(key: str | None) -> Iterator[None]:
    """:func:`excluding` with the key already made (``request_key``), for code
    that computed it elsewhere (an async caller, another thread)."""
    token = _current.set(key)
    try:
        yield
    finally:
        _current.reset(token)


def with_exclusion(key: str | None, func: Any, *args: Any) -> Any:
    """``func(*args)`` inside :func:`excluding_key` (for a worker thread, which
    does not inherit the caller's context)."""
    with excluding_key(key):
        return func(*args)


def deliver_except(subs: Any, event: Any) -> None:
    """Deliver ``event`` to ``subs`` but the excluded one, which gets, for a
    stored event, a copy without body: its position moves past the event, so
    it reads no hole from the store and its next id covers it."""
    for sub in subs:
        if sub.connection != event.exclude:
            sub.deliver(event)
        elif event.seq is not None:
            sub.deliver(replace(event, body=b""))
