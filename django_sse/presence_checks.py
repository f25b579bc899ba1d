"""System checks of presence: timings, the member callable, the layer."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from .conf import conf


@register(Tags.compatibility)
def check_presence(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from .checks import check_settings

    if check_settings():
        return []  # E003 already says what is wrong
    messages: list[CheckMessage] = []
    if conf.SSE_PRESENCE_HEARTBEAT >= conf.SSE_PRESENCE_TIMEOUT:
        messages.append(
            Error(
                f"SSE_PRESENCE_HEARTBEAT ({conf.SSE_PRESENCE_HEARTBEAT:g}s) is not below "
                f"SSE_PRESENCE_TIMEOUT ({conf.SSE_PRESENCE_TIMEOUT:g}s): presence entries "
                "would expire between heartbeats, and members would leave and join again.",
                hint="Keep the timeout at least twice the heartbeat (defaults: 5 and 15).",
                id="django_sse.E040",
            )
        )
    path = conf.SSE_PRESENCE_MEMBER
    if path:
        from django.utils.module_loading import import_string

        try:
            member = import_string(path)
        except ImportError as exc:
            member, problem = None, f"cannot be imported: {exc}"
        else:
            problem = "is not callable"
        if member is None or not callable(member):
            messages.append(
                Error(
                    f"SSE_PRESENCE_MEMBER names {path!r}, which {problem}.",
                    hint="Name a function (user) -> dict of public fields, or set None.",
                    id="django_sse.E041",
                )
            )
    messages.extend(_check_layer())
    messages.extend(_check_public())
    return messages


def _check_public() -> list[CheckMessage]:
    """A public presence channel with the default member data lists the pk
    and full name of every signed-in viewer to anyone, signed in or not."""
    from .channels import PUBLIC, registry

    if conf.SSE_PRESENCE_MEMBER:
        return []  # the project chose what a member shows
    return [
        Warning(
            f"Presence channel {reg.pattern!r} is channels.PUBLIC and shows the default "
            "member data: anyone, signed in or not, sees the pk and full name of every "
            "signed-in user on it.",
            hint="Restrict the channel's read policy, or pass member= with what may be "
            "public (or set SSE_PRESENCE_MEMBER).",
            obj=reg.pattern,
            id="django_sse.W041",
        )
        for reg in registry
        if reg.presence and reg.policy is PUBLIC and reg.member is None
    ]


def _check_layer() -> list[CheckMessage]:
    from .channels import registry

    if not any(reg.presence for reg in registry):
        return []
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    backend = str((layers.get("default") or {}).get("BACKEND", ""))
    if (
        not backend
        or backend.startswith("channels_redis.")
        or backend.endswith("InMemoryChannelLayer")
    ):
        return []
    return [
        Warning(
            f"Presence channels are registered, but CHANNEL_LAYERS['default'] is {backend!r}, "
            "neither a channels-redis layer nor the in-memory one: presence is kept in each "
            "process's memory, so every process sees only its own members.",
            hint="Use channels_redis.pubsub.RedisPubSubChannelLayer for several processes.",
            id="django_sse.W040",
        )
    ]
