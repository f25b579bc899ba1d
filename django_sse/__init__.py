"""Realtime notifications for Django over Server-Sent Events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"
__all__ = ["asend_event", "channels", "send_event", "user_channel"]

if TYPE_CHECKING:
    from . import channels
    from .channels import user_channel
    from .publish import asend_event, send_event


def __getattr__(name: str) -> Any:
    # Lazy, so that ``import django_sse`` needs no configured settings.
    if name in ("send_event", "asend_event"):
        from . import publish

        return getattr(publish, name)
    if name == "user_channel":
        from .channels import user_channel

        return user_channel
    if name == "channels":
        import importlib

        return importlib.import_module(".channels", __name__)
    raise AttributeError(f"module 'django_sse' has no attribute {name!r}")
