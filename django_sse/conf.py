"""Settings for django_sse, read from ``django.conf.settings`` at access time.

Every setting is a flat ``SSE_*`` name with a default. Values are read on each
access (never cached) so ``override_settings`` works in tests. Types are
validated by the system check ``django_sse.E003``, not here, so a bad value
never breaks ``import``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    kind: type
    minimum: float | None = None
    help: str = ""
    nullable: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "SSE_KEEPALIVE",
        15.0,
        float,
        0.01,
        "Seconds of silence after which a ``: keepalive`` comment is sent.",
    ),
    Setting(
        "SSE_RETRY_MS",
        3000,
        int,
        0,
        "Reconnection delay, in milliseconds, sent to clients in the first ``retry:`` field.",
    ),
    Setting(
        "SSE_MAX_CHANNELS",
        10,
        int,
        1,
        "Most channels one stream may subscribe to; more is a 400.",
    ),
    Setting(
        "SSE_QUEUE_SIZE",
        1000,
        int,
        1,
        "Events buffered per stream before a slow stream is closed.",
    ),
    Setting(
        "SSE_MAX_EVENT_BYTES",
        65536,
        int,
        1,
        "Largest payload (UTF-8 text or JSON, without SSE framing) accepted by "
        "``send_event``; larger is a ``ValueError``.",
    ),
    Setting(
        "SSE_STORE",
        "django_sse.store.DatabaseStore",
        str,
        None,
        "Dotted path of the event store class, or None to keep no history.",
        nullable=True,
    ),
    Setting(
        "SSE_AUTHENTICATION_CLASSES",
        ("django_sse.auth.SessionAuthentication",),
        tuple,
        None,
        "Dotted paths of the classes that authenticate a stream, tried in order: "
        "``django_sse.auth.SessionAuthentication`` (the Django session) or any Django "
        "REST framework authentication class.",
    ),
    Setting(
        "SSE_TOKEN_MAX_AGE",
        60.0,
        float,
        1,
        "Seconds a stream token from the ``token/`` endpoint may be used to start a stream.",
    ),
    Setting(
        "SSE_MAX_STREAMS_PER_USER",
        None,
        int,
        1,
        "Most streams one authenticated user may hold open in one server process; "
        "more is a 429. None: no limit.",
        nullable=True,
    ),
    Setting(
        "SSE_MAX_STREAMS_PER_ADDRESS",
        50,
        int,
        1,
        "Most anonymous streams one client address may hold open in one server "
        "process; more is a 429. None: no limit.",
        nullable=True,
    ),
    Setting(
        "SSE_CLIENT_IP_HEADER",
        None,
        str,
        None,
        "Request header a trusted proxy sets to the client's address (such as "
        "``X-Forwarded-For``), read instead of the connection's address; None: the "
        "connection's address.",
        nullable=True,
    ),
    Setting(
        "SSE_MAX_STREAM_AGE",
        None,
        float,
        1,
        "Seconds after which a stream is closed (less up to 10% of random jitter) so "
        "that its client reconnects and resumes. None: streams stay open.",
        nullable=True,
    ),
    Setting(
        "SSE_CORS_ALLOWED_ORIGINS",
        (),
        tuple,
        None,
        "Origins (``https://app.example.com``) whose pages may open streams and fetch "
        "tokens cross-origin, with credentials.",
    ),
    Setting(
        "SSE_HISTORY_MAX_EVENTS",
        1000,
        int,
        1,
        "Events kept per channel for resuming clients; older ones are pruned.",
    ),
    Setting(
        "SSE_HISTORY_MAX_AGE",
        86400.0,
        float,
        1,
        "Seconds an event is kept for resuming clients; older ones are pruned.",
    ),
    Setting(
        "SSE_HISTORY_POLL",
        5.0,
        float,
        0.05,
        "Seconds between checks of the store for events the channel layer did not "
        "deliver (layer outage, publisher crash).",
    ),
    Setting(
        "SSE_HISTORY_PRUNE_INTERVAL",
        60.0,
        float,
        0,
        "Seconds between the bulk prunes a publishing process runs; 0 leaves pruning "
        "to the sse_prune command.",
    ),
    Setting(
        "SSE_STORE_THREADS",
        4,
        int,
        1,
        "Threads per process that run store reads and writes for async code, each "
        "keeping one database connection.",
    ),
    Setting(
        "SSE_PUBLISH_PERMISSION_CLASSES",
        (
            "rest_framework.permissions.IsAuthenticated",
            "django_sse.api.CanPublishEvents",
        ),
        tuple,
        None,
        "Dotted paths of the Django REST framework permission classes guarding the "
        "publish endpoint.",
    ),
    Setting(
        "SSE_PUBLISH_TIMEOUT",
        5.0,
        float,
        0.01,
        "Seconds any one channel-layer call (publish, group join or leave, revocation) "
        "may take before it is abandoned; a stored event then reaches streams through "
        "the catch-up poll.",
    ),
    Setting(
        "SSE_SESSION_CHECK_INTERVAL",
        2.0,
        float,
        0.1,
        "Seconds between the checks each server process makes of the sessions and users "
        "behind its open streams: a password change, a deleted session or user ends "
        "those streams within about this long.",
    ),
    Setting(
        "SSE_METRICS",
        False,
        bool,
        None,
        "Whether to count Prometheus metrics (``django_sse_*``, needs the ``metrics`` "
        "extra: ``prometheus-client``); off, prometheus_client is never imported.",
    ),
    Setting(
        "SSE_REFRESH_DEBOUNCE",
        0.5,
        float,
        0.01,
        "Seconds a refresh hook (``hooks.register(..., refresh=True)``) collects the "
        "changes of a channel before it sends one event for them all.",
    ),
    Setting(
        "SSE_INBOX_MAX_AGE",
        90 * 86400.0,
        float,
        1,
        "Seconds an inbox item is kept, read or not, before ``sse_prune`` removes it. "
        "None: kept until deleted.",
        nullable=True,
    ),
    Setting(
        "SSE_INBOX_MAX_ITEMS",
        1000,
        int,
        1,
        "Most inbox items kept per user; ``sse_prune`` removes the oldest beyond it. "
        "None: no limit.",
        nullable=True,
    ),
    Setting(
        "SSE_INBOX_PAGE_SIZE",
        20,
        int,
        1,
        "Inbox items per page of the inbox list endpoint and ``{% sse_inbox_list %}``.",
    ),
    Setting(
        "SSE_PRESENCE_HEARTBEAT",
        5.0,
        float,
        0.05,
        "Seconds between the heartbeats each server process sends for the presence "
        "members (and channel occupancy) it holds.",
    ),
    Setting(
        "SSE_PRESENCE_TIMEOUT",
        15.0,
        float,
        0.1,
        "Seconds after its last heartbeat that a process's presence entries expire: the "
        "members of a process that died leave within this plus SSE_PRESENCE_HEARTBEAT.",
    ),
    Setting(
        "SSE_PRESENCE_MEMBER",
        None,
        str,
        None,
        "Dotted path of the project-wide ``(user) -> dict`` member data callable of "
        "presence channels registered without ``member=``; None: the user's pk and "
        "display name.",
        nullable=True,
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def setting_error(s: Setting, value: Any) -> str | None:
    """Return why ``value`` is not acceptable for ``s``, or ``None``."""
    if value is None and s.nullable:
        return None
    if s.kind is tuple:
        if isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value):
            return None
        return f"{s.name} must be a list of strings, got {value!r}"
    if s.kind is str:
        if isinstance(value, str) and value:
            return None
        return (
            f"{s.name} must be a non-empty string{' or None' if s.nullable else ''}, got {value!r}"
        )
    if s.kind is bool:
        if isinstance(value, bool):
            return None
        return f"{s.name} must be True or False, got {value!r}"
    if s.kind is float:
        ok = _number(value)
    else:
        ok = isinstance(value, s.kind) and not isinstance(value, bool)
    if not ok:
        return f"{s.name} must be {'a number' if s.kind is float else 'an integer'}, got {value!r}"
    if s.minimum is not None and value < s.minimum:
        return f"{s.name} must be at least {s.minimum:g}, got {value!r}"
    return None


class Settings:
    """Typed, always-fresh access to the ``SSE_*`` settings."""

    def _get(self, name: str) -> Any:
        return getattr(settings, name, _BY_NAME[name].default)

    @property
    def SSE_KEEPALIVE(self) -> float:
        return float(self._get("SSE_KEEPALIVE"))

    @property
    def SSE_RETRY_MS(self) -> int:
        return int(self._get("SSE_RETRY_MS"))

    @property
    def SSE_MAX_CHANNELS(self) -> int:
        return int(self._get("SSE_MAX_CHANNELS"))

    @property
    def SSE_QUEUE_SIZE(self) -> int:
        return int(self._get("SSE_QUEUE_SIZE"))

    @property
    def SSE_MAX_EVENT_BYTES(self) -> int:
        return int(self._get("SSE_MAX_EVENT_BYTES"))

    @property
    def SSE_STORE(self) -> str | None:
        value = self._get("SSE_STORE")
        return str(value) if value else None

    @property
    def SSE_AUTHENTICATION_CLASSES(self) -> tuple[str, ...]:
        return tuple(self._get("SSE_AUTHENTICATION_CLASSES"))

    @property
    def SSE_TOKEN_MAX_AGE(self) -> float:
        return float(self._get("SSE_TOKEN_MAX_AGE"))

    @property
    def SSE_MAX_STREAMS_PER_USER(self) -> int | None:
        value = self._get("SSE_MAX_STREAMS_PER_USER")
        return None if value is None else int(value)

    @property
    def SSE_MAX_STREAMS_PER_ADDRESS(self) -> int | None:
        value = self._get("SSE_MAX_STREAMS_PER_ADDRESS")
        return None if value is None else int(value)

    @property
    def SSE_CLIENT_IP_HEADER(self) -> str | None:
        value = self._get("SSE_CLIENT_IP_HEADER")
        return str(value) if value else None

    @property
    def SSE_MAX_STREAM_AGE(self) -> float | None:
        value = self._get("SSE_MAX_STREAM_AGE")
        return None if value is None else float(value)

    @property
    def SSE_CORS_ALLOWED_ORIGINS(self) -> tuple[str, ...]:
        return tuple(self._get("SSE_CORS_ALLOWED_ORIGINS"))

    @property
    def SSE_HISTORY_MAX_EVENTS(self) -> int:
        return int(self._get("SSE_HISTORY_MAX_EVENTS"))

    @property
    def SSE_HISTORY_MAX_AGE(self) -> float:
        return float(self._get("SSE_HISTORY_MAX_AGE"))

    @property
    def SSE_HISTORY_POLL(self) -> float:
        return float(self._get("SSE_HISTORY_POLL"))

    @property
    def SSE_HISTORY_PRUNE_INTERVAL(self) -> float:
        return float(self._get("SSE_HISTORY_PRUNE_INTERVAL"))

    @property
    def SSE_STORE_THREADS(self) -> int:
        return int(self._get("SSE_STORE_THREADS"))

    @property
    def SSE_PUBLISH_PERMISSION_CLASSES(self) -> tuple[str, ...]:
        return tuple(self._get("SSE_PUBLISH_PERMISSION_CLASSES"))

    @property
    def SSE_PUBLISH_TIMEOUT(self) -> float:
        return float(self._get("SSE_PUBLISH_TIMEOUT"))

    @property
    def SSE_SESSION_CHECK_INTERVAL(self) -> float:
        return float(self._get("SSE_SESSION_CHECK_INTERVAL"))

    @property
    def SSE_METRICS(self) -> bool:
        # True only: a string "False" from the environment leaves metrics off.
        return self._get("SSE_METRICS") is True

    @property
    def SSE_REFRESH_DEBOUNCE(self) -> float:
        return float(self._get("SSE_REFRESH_DEBOUNCE"))

    @property
    def SSE_INBOX_MAX_AGE(self) -> float | None:
        value = self._get("SSE_INBOX_MAX_AGE")
        return None if value is None else float(value)

    @property
    def SSE_INBOX_MAX_ITEMS(self) -> int | None:
        value = self._get("SSE_INBOX_MAX_ITEMS")
        return None if value is None else int(value)

    @property
    def SSE_INBOX_PAGE_SIZE(self) -> int:
        return int(self._get("SSE_INBOX_PAGE_SIZE"))

    @property
    def SSE_PRESENCE_HEARTBEAT(self) -> float:
        return float(self._get("SSE_PRESENCE_HEARTBEAT"))

    @property
    def SSE_PRESENCE_TIMEOUT(self) -> float:
        return float(self._get("SSE_PRESENCE_TIMEOUT"))

    @property
    def SSE_PRESENCE_MEMBER(self) -> str | None:
        value = self._get("SSE_PRESENCE_MEMBER")
        return str(value) if value else None


conf = Settings()
