"""Realtime notifications for Django over Server-Sent Events."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"
__all__ = [
    "acurrent_position",
    "anotify",
    "apresence",
    "arevoke",
    "asend_event",
    "asend_events",
    "channels",
    "current_position",
    "hooks",
    "inbox",
    "notify",
    "presence",
    "revoke",
    "send_event",
    "send_events",
    "user_channel",
]

if TYPE_CHECKING:
    from . import channels, hooks, inbox
    from .channels import user_channel
    from .notifications import anotify, notify
    from .position import acurrent_position, current_position
    from .presence_api import apresence, presence
    from .publish import asend_event, send_event
    from .publish_batch import asend_events, send_events
    from .revocation import arevoke, revoke

# Lazy, so that ``import django_sse`` needs no configured settings.
_LAZY = {
    "send_event": "publish",
    "asend_event": "publish",
    "send_events": "publish_batch",
    "asend_events": "publish_batch",
    "current_position": "position",
    "acurrent_position": "position",
    "user_channel": "channels",
    "notify": "notifications",
    "anotify": "notifications",
    "revoke": "revocation",
    "presence": "presence_api",
    "apresence": "presence_api",
    "arevoke": "revocation",
}
_MODULES = ("channels", "hooks", "inbox")


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'django_sse' has no attribute {name!r}")
