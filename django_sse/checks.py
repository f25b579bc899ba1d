"""System checks: misconfiguration is reported with an id and a hint."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from .conf import SETTINGS, conf, setting_error
from .ids import MAX_STORED_CHANNELS

# Field names that hold credentials: never something to broadcast.
_SECRET_WORDS = re.compile(
    r"password|passwd|passphrase|secret|token|credential|api_?key|private_?key|"
    r"access_?key|session_?key|(^|_)(pwd|salt|otp|pin|hash)(_|$)",
    re.IGNORECASE,
)

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


@register(Tags.compatibility)
def check_refresh_window(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from .refresh import MAX_WINDOW, setting_problem

    problem = setting_problem()
    if problem is None:
        return []
    hint = (
        f"Refresh hooks send a channel's refresh at most this long after a change: "
        f"keep it at most {MAX_WINDOW:g} seconds (default 0.5)."
    )
    return [Error(problem, hint=hint, obj="SSE_REFRESH_DEBOUNCE", id="django_sse.E070")]


@register(Tags.compatibility)
def check_store(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.utils.module_loading import import_string

    if check_settings():
        return []  # E003 already says what is wrong
    path = conf.SSE_STORE
    if path is None:
        return []
    messages: list[CheckMessage] = []
    try:
        import_string(path)
    except ImportError as exc:
        messages.append(
            Error(
                f"SSE_STORE {path!r} cannot be imported: {exc}",
                hint="Use 'django_sse.store.DatabaseStore' (the default), a class of yours, "
                "or None for no history.",
                id="django_sse.E005",
            )
        )
    if conf.SSE_MAX_CHANNELS > MAX_STORED_CHANNELS:
        messages.append(
            Error(
                f"SSE_MAX_CHANNELS is {conf.SSE_MAX_CHANNELS}: with history on, the id of an "
                f"event names the position on every channel of its stream, and beyond "
                f"{MAX_STORED_CHANNELS} channels it could exceed 127 bytes (browsers then "
                "send a CORS preflight on reconnection).",
                hint=f"Set SSE_MAX_CHANNELS to {MAX_STORED_CHANNELS} or less.",
                id="django_sse.E004",
            )
        )
    return messages


@register(Tags.compatibility)
def check_fast_path(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.utils.module_loading import import_string

    from .asgi import stream_path, wraps_fast_path

    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path or stream_path() is None:
        return []  # E002, or no stream URL to serve
    try:
        application = import_string(path)
    except Exception:
        return []  # the project's own problem, reported when a server loads it
    if wraps_fast_path(application):
        return []
    return [
        Warning(
            f"{path} does not use the django_sse fast path: every open stream then "
            "holds an OS thread and about 50 KB in Django's async view.",
            hint=(
                "In asgi.py, wrap the application: "
                "'application = django_sse.asgi.fast_path(get_asgi_application())', "
                "or silence django_sse.W003 to keep the view."
            ),
            id="django_sse.W003",
        )
    ]


@register(Tags.compatibility)
def check_publish_permissions(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from importlib.util import find_spec

    if find_spec("rest_framework") is None or check_settings():
        return []  # no endpoint, or E003 already says what is wrong
    messages: list[CheckMessage] = []
    for path, exc in _unimportable(conf.SSE_PUBLISH_PERMISSION_CLASSES):
        messages.append(
            Error(
                f"SSE_PUBLISH_PERMISSION_CLASSES: {path!r} cannot be imported: {exc}",
                hint="List Django REST framework permission classes by dotted path, such "
                "as 'rest_framework.permissions.IsAuthenticated'.",
                obj="SSE_PUBLISH_PERMISSION_CLASSES",
                id="django_sse.E020",
            )
        )
    return messages


class _SampleValue:
    """Stands for any attribute in a channel template: ``{owner.pk}`` becomes ``1``."""

    def __getattr__(self, name: str) -> _SampleValue:
        return self

    def __getitem__(self, key: object) -> _SampleValue:
        return self

    def __format__(self, spec: str) -> str:
        return "1"


class _SampleValues(dict[str, Any]):
    def __missing__(self, key: str) -> _SampleValue:
        return _SampleValue()


@register(Tags.models)
def check_hooks(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from .channels import registry as channel_registry
    from .hooks import placeholders
    from .hooks import registry as hook_registry

    messages: list[CheckMessage] = []
    for hook in hook_registry:
        model = hook.model
        label = model._meta.label
        if not hook.names_its_payload:
            messages.append(
                Error(
                    f"The hook of {label} names no payload, so it sends nothing.",
                    hint="Give fields=[...] (or '__all__' for every field), serializer= "
                    "or payload=, or use hooks.register() as a decorator of a payload "
                    "function: a hook never sends every column by default.",
                    obj=model,
                    id="django_sse.E022",
                )
            )
        secrets = [name for name in _published_fields(hook) if _SECRET_WORDS.search(name)]
        if secrets:
            messages.append(
                Warning(
                    f"The hook of {label} publishes {', '.join(map(repr, secrets))}, which "
                    "looks like a secret: every reader of its channels gets it, and the "
                    "history stores it.",
                    hint="List only the fields readers need in fields=, or silence "
                    "django_sse.W021 if the value is not secret.",
                    obj=model,
                    id="django_sse.W021",
                )
            )
        templates = [] if callable(hook.channels) else list(hook.channels)
        if isinstance(hook.channels, str):
            templates = [hook.channels]
        listed = hook.fields if isinstance(hook.fields, tuple) else ()
        names = [*listed, *(p for t in templates for p in placeholders(t))]
        for name in names:
            if not hasattr(model, name):
                messages.append(
                    Error(
                        f"The hook of {label} names {name!r}, which is neither a field nor "
                        "an attribute of the model.",
                        hint="Check the spelling in fields= and in the channel templates "
                        "(placeholders such as {pk} or {owner_id}).",
                        obj=model,
                        id="django_sse.E021",
                    )
                )
        for template in templates:
            try:
                sample = template.format_map(_SampleValues())
            except (TypeError, ValueError):
                continue  # a format spec that the sample cannot take
            if channel_registry.resolve(sample) is None:
                messages.append(
                    Warning(
                        f"The hook of {label} sends to {template!r}, which matches no "
                        "registered channel: nobody can read its events.",
                        hint="Register the channel in <app>/sse.py with channels.register().",
                        obj=model,
                        id="django_sse.W020",
                    )
                )
    return messages


def _published_fields(hook: Any) -> list[str]:
    """The field names a hook's payload holds, where they can be known."""
    if hook.fields is not None:
        return list(hook.field_names())
    if hook.serializer is not None:
        try:
            return list(hook.serializer().fields)
        except Exception:
            return []  # the serializer's own error shows when the hook sends
    return []  # a payload function: its keys are known only when it runs


def _unimportable(paths: tuple[str, ...]) -> list[tuple[str, ImportError]]:
    """The dotted paths that cannot be imported, with the error of each."""
    from django.utils.module_loading import import_string

    failed = []
    for path in paths:
        try:
            import_string(path)
        except ImportError as exc:
            failed.append((path, exc))
    return failed


@register(Tags.security)
def check_access(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:

    from .cors import ORIGIN_RE

    if check_settings():
        return []  # E003 already says what is wrong
    messages: list[CheckMessage] = []
    for path, exc in _unimportable(conf.SSE_AUTHENTICATION_CLASSES):
        messages.append(
            Error(
                f"SSE_AUTHENTICATION_CLASSES names {path!r}, which cannot be imported: {exc}",
                hint="Use 'django_sse.auth.SessionAuthentication' or a Django REST framework "
                "authentication class (pip install djangorestframework).",
                id="django_sse.E010",
            )
        )
    for origin in conf.SSE_CORS_ALLOWED_ORIGINS:
        if not ORIGIN_RE.fullmatch(origin):
            messages.append(
                Error(
                    f"SSE_CORS_ALLOWED_ORIGINS holds {origin!r}, which is not an origin.",
                    hint="List each origin as scheme://host[:port], with no path and no '*': "
                    "a wildcard cannot be used with credentials.",
                    id="django_sse.E011",
                )
            )
    return messages


# The inbox's checks live with the inbox.
from . import inbox_checks  # noqa: E402, F401
