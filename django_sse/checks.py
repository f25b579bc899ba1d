"""System checks: misconfiguration is reported with an id and a hint."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from .conf import SETTINGS, setting_error

REDIS_CORE_LAYER = "channels_redis.core.RedisChannelLayer"
PUBSUB_LAYER = "channels_redis.pubsub.RedisPubSubChannelLayer"


@register(Tags.compatibility)
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    default = layers.get("default") if isinstance(layers, dict) else None
    if not isinstance(default, dict) or not default.get("BACKEND"):
        return [
            Error(
                "No channel layer is configured: django_sse publishes through "
                "CHANNEL_LAYERS['default'].",
                hint=(
                    "Set CHANNEL_LAYERS = {'default': {'BACKEND': "
                    "'channels.layers.InMemoryChannelLayer'}} for one process, or "
                    f"'{PUBSUB_LAYER}' with CONFIG {{'hosts': [REDIS_URL]}} for several."
                ),
                id="django_sse.E001",
            )
        ]
    if default["BACKEND"] == REDIS_CORE_LAYER:
        return [
            Warning(
                "CHANNEL_LAYERS['default'] uses RedisChannelLayer, which silently drops "
                "group messages once a channel holds 'capacity' (default 100) messages: "
                "a burst of events would be lost without an error.",
                hint=f"Use '{PUBSUB_LAYER}' with the same hosts.",
                id="django_sse.W001",
            )
        ]
    return []


@register(Tags.compatibility)
def check_asgi(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not getattr(settings, "ASGI_APPLICATION", None):
        messages.append(
            Error(
                "ASGI_APPLICATION is not set: event streams need an ASGI server.",
                hint="Set ASGI_APPLICATION = '<project>.asgi.application' (see the quickstart).",
                id="django_sse.E002",
            )
        )
    apps = list(getattr(settings, "INSTALLED_APPS", []))
    staticfiles = "django.contrib.staticfiles"
    if "daphne" not in apps or (
        staticfiles in apps and apps.index("daphne") > apps.index(staticfiles)
    ):
        messages.append(
            Warning(
                "django_sse is installed under WSGI only for development: 'runserver' "
                "serves WSGI unless 'daphne' comes first in INSTALLED_APPS, and a WSGI "
                "worker cannot stream events.",
                hint=(
                    "Put 'daphne' at the top of INSTALLED_APPS (before "
                    "'django.contrib.staticfiles'), or silence django_sse.W002 if you only "
                    "run under uvicorn or daphne directly."
                ),
                id="django_sse.W002",
            )
        )
    return messages


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for s in SETTINGS:
        if not hasattr(settings, s.name):
            continue
        error = setting_error(s, getattr(settings, s.name))
        if error is not None:
            messages.append(
                Error(
                    error,
                    hint=f"{s.help} Default: {s.default!r}.",
                    obj=s.name,
                    id="django_sse.E003",
                )
            )
    return messages
