"""``notify()``: an inbox item and a ``notification`` event for each user."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Model, QuerySet
from django.http.request import split_domain_port, validate_host
from django.utils.http import url_has_allowed_host_and_scheme

from . import dbthreads
from .channels import user_channel
from .events import Event
from .exclude import arequest_key, excluding_key, request_key, with_exclusion
from .inbox import ITEM_KEYS
from .inbox_items import persist_notifications
from .publish_batch import asend_events, send_events

__all__ = ["NOTIFICATION_EVENT", "anotify", "notify", "validate_notification_url"]

NOTIFICATION_EVENT = "notification"
MAX_URL_LENGTH = 2000
#: The inbox's ``level`` column.
MAX_LEVEL_LENGTH = 20
# Whitespace, controls and backslashes: browsers drop or reinterpret them
# ("\\evil.com" is "//evil.com" to Chrome), and a link never needs them raw.
_UNSAFE_URL_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f\\]")


def _allowed_hosts() -> list[str]:
    hosts = [h for h in settings.ALLOWED_HOSTS if h != "*"]  # "*" is every site, not ours
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        hosts = [".localhost", "127.0.0.1", "[::1]"]  # as Django's own host check
    return hosts


def validate_notification_url(url: object) -> str:
    """Return ``url`` if a notification may link to it, else raise ``ValueError``.

    A relative URL ("/tickets/42/", "?page=2") or an http(s) URL whose host
    matches ``ALLOWED_HOSTS`` (without ``"*"``): never ``javascript:``,
    ``data:``, "//evil.com" or another site, since a page puts the link in
    front of the user as the site's own."""
    if not isinstance(url, str):
        raise TypeError(f"notification url must be a str, got {type(url).__name__}")
    shown = repr(url[:80])
    if not url or len(url) > MAX_URL_LENGTH:
        raise ValueError(f"notification url must be 1 to {MAX_URL_LENGTH} characters long")
    if _UNSAFE_URL_CHARS.search(url):
        raise ValueError(
            f"notification url {shown} contains whitespace, a control character or a "
            "backslash; percent-encode them"
        )
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        netloc = "\x00"  # malformed (a bad IPv6 literal): matches no host
    ours = set()
    if netloc and "@" not in netloc:
        domain, _ = split_domain_port(netloc)
        if domain and validate_host(domain, _allowed_hosts()):
            ours.add(netloc)
    if not url_has_allowed_host_and_scheme(url, allowed_hosts=ours):
        raise ValueError(
            f"notification url {shown} is not safe: use a relative URL such as "
            "'/tickets/42/' or an http(s) URL on a host in ALLOWED_HOSTS"
        )
    return url


def _users(user_or_users: Any) -> list[Any]:
    # A model instance, also behind request.user's SimpleLazyObject (which
    # proxies __iter__, so it looks iterable to isinstance()).
    if isinstance(user_or_users, Model) or (
        hasattr(user_or_users, "pk") and not isinstance(user_or_users, Iterable)
    ):
        return [user_or_users]
    if isinstance(user_or_users, QuerySet):
        # The pk is all a notification needs: no 10,000 full user rows.
        return list(user_or_users.only("pk"))
    return list(user_or_users)


def _prepare(
    user_or_users: Any, message: Any, level: str, url: Any, extra: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    users = _users(user_or_users)
    if not isinstance(level, str) or not level or len(level) > MAX_LEVEL_LENGTH:
        raise ValueError(
            f"notification level must be a non-empty str of at most {MAX_LEVEL_LENGTH} "
            f"characters, got {level!r:.40}"
        )
    if url is not None:
        url = validate_notification_url(str(url))  # str(): lazy reverse_lazy() URLs
    reserved = sorted(ITEM_KEYS & extra.keys())
    if reserved:
        raise TypeError(f"notify() keywords {reserved} are the inbox item's own fields")
    data = {"message": str(message), "level": level, "url": url}
    data.update(extra)
    # One channel per user, in order: notify([ann, ann]) is one notification.
    unique = list({user_channel(user): user for user in users}.values())
    return unique, data


def notify(
    user_or_users: Any,
    message: Any,
    *,
    level: str = "info",
    url: Any = None,
    actor: Any = None,
    target: Any = None,
    persist: bool = True,
    using: str | None = None,
    exclude: Any = None,
    **extra: Any,
) -> list[Event]:
    """Keep a notification in the inbox of a user, or of each user of an
    iterable or queryset, and send event ``notification`` to their private
    channels: ``{"id", "message", "level", "url", "created", "read_at",
    "actor", "target", "unread", **extra}``.

    ``persist=False`` keeps nothing (fire and forget): the event is
    ``{"message", "level", "url", **extra}``. Either way every event is
    validated before anything is stored; a queryset of many users costs a few
    bulk statements, not a round trip per user. Follows the transaction like
    :func:`~django_sse.send_event`. ``exclude=request`` skips the stream of
    the tab that sent ``request`` (its other tabs still get it). Returns the events."""
    users, data = _prepare(user_or_users, message, level, url, extra)
    with excluding_key(request_key(exclude)):
        if not persist:
            events = [(user_channel(user), NOTIFICATION_EVENT, data) for user in users]
            return send_events(events, using=using)
        return persist_notifications(users, data, actor, target, using or DEFAULT_DB_ALIAS)


async def anotify(
    user_or_users: Any,
    message: Any,
    *,
    level: str = "info",
    url: Any = None,
    actor: Any = None,
    target: Any = None,
    persist: bool = True,
    exclude: Any = None,
    **extra: Any,
) -> list[Event]:
    """Async twin of :func:`notify` (the database work runs in a store thread)."""
    if isinstance(user_or_users, QuerySet):
        user_or_users = [user async for user in user_or_users.only("pk")]
    users, data = _prepare(user_or_users, message, level, url, extra)
    key = await arequest_key(exclude)
    if not persist:
        with excluding_key(key):
            return await asend_events([(user_channel(u), NOTIFICATION_EVENT, data) for u in users])
    # A store thread does not inherit this context: the key goes along.
    events: list[Event] = await dbthreads.run(
        with_exclusion,
        key,
        persist_notifications,
        users,
        data,
        actor,
        target,
        DEFAULT_DB_ALIAS,
        retry=False,
    )
    return events
