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
)

_BY_NAME = {s.name: s for s in SETTINGS}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def setting_error(s: Setting, value: Any) -> str | None:
    """Return why ``value`` is not acceptable for ``s``, or ``None``."""
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


conf = Settings()
