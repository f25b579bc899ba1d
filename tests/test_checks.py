from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import CheckMessage
from django.test import override_settings

from django_sse.checks import check_asgi, check_channel_layer, check_fast_path, check_settings

OK_APPS = ["daphne", "django.contrib.staticfiles", "channels", "django_sse"]


def ids(messages: list[CheckMessage]) -> list[str]:
    assert all(m.hint for m in messages), "every message names a fix"
    return [str(m.id) for m in messages]


def test_project_settings_pass_every_check() -> None:
    assert check_channel_layer() + check_asgi() + check_settings() + check_fast_path() == []


@pytest.mark.parametrize("layers", [{}, {"other": {"BACKEND": "x"}}, {"default": {}}, None])
def test_e001_no_channel_layer(layers: Any) -> None:
    with override_settings(CHANNEL_LAYERS=layers):
        assert ids(check_channel_layer()) == ["django_sse.E001"]


def test_w001_redis_core_layer() -> None:
    layers = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layers):
        [message] = check_channel_layer()
    assert message.id == "django_sse.W001"
    assert "RedisPubSubChannelLayer" in str(message.hint)


def test_e002_no_asgi_application() -> None:
    with override_settings(ASGI_APPLICATION=None, INSTALLED_APPS=OK_APPS):
        assert ids(check_asgi()) == ["django_sse.E002"]


@pytest.mark.parametrize(
    "apps",
    [
        ["django.contrib.staticfiles", "channels", "django_sse"],
        ["django.contrib.staticfiles", "daphne", "django_sse"],
    ],
)
def test_w002_wsgi_only_runserver(apps: list[str]) -> None:
    with override_settings(INSTALLED_APPS=apps):
        assert ids(check_asgi()) == ["django_sse.W002"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SSE_KEEPALIVE", "15"),
        ("SSE_KEEPALIVE", 0),
        ("SSE_RETRY_MS", 1.5),
        ("SSE_RETRY_MS", -1),
        ("SSE_MAX_CHANNELS", 0),
        ("SSE_MAX_CHANNELS", True),
        ("SSE_QUEUE_SIZE", None),
        ("SSE_MAX_EVENT_BYTES", "64k"),
    ],
)
def test_e003_bad_setting(name: str, value: Any) -> None:
    with override_settings(**{name: value}):
        [message] = check_settings()
    assert message.id == "django_sse.E003"
    assert name in message.msg and message.obj == name and "Default" in str(message.hint)


def test_e003_accepts_good_values() -> None:
    with override_settings(SSE_KEEPALIVE=5, SSE_RETRY_MS=0, SSE_MAX_CHANNELS=3):
        assert check_settings() == []


def test_checks_run_through_manage_check() -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    with override_settings(SSE_QUEUE_SIZE="big"), pytest.raises(SystemCheckError, match="E003"):
        call_command("check")


def test_e020_publish_permission_class_cannot_be_imported() -> None:
    from django_sse.checks import check_publish_permissions

    assert check_publish_permissions() == []
    paths = ["rest_framework.permissions.IsAuthenticated", "myapp.perms.Missing"]
    with override_settings(SSE_PUBLISH_PERMISSION_CLASSES=paths):
        [message] = check_publish_permissions()
    assert message.id == "django_sse.E020" and "myapp.perms.Missing" in message.msg
    with override_settings(SSE_PUBLISH_PERMISSION_CLASSES="rest_framework.permissions.AllowAny"):
        assert ids(check_settings()) == ["django_sse.E003"]
        assert check_publish_permissions() == []


@pytest.fixture
def note_hooks() -> Any:
    from django_sse import hooks
    from tests.testapp.models import Note

    yield lambda **options: hooks.register(Note, **options)
    hooks.unregister(Note)


def test_e021_hook_names_an_unknown_field_and_w020_an_unreadable_channel(note_hooks: Any) -> None:
    from django_sse.checks import check_hooks

    assert check_hooks() == []  # the test project's own hooks
    note_hooks(channels="public", fields=["text", "colour"])
    note_hooks(channels=["news:{slug}", "nowhere:{pk}", "news:{text.upper}"], fields=["text"])
    note_hooks(channels=lambda note: "anything", fields="__all__")  # computed per instance
    messages = check_hooks()
    assert ids(messages) == ["django_sse.E021", "django_sse.E021", "django_sse.W020"]
    assert "'colour'" in messages[0].msg and "'slug'" in messages[1].msg
    assert "'nowhere:{pk}'" in messages[2].msg


def test_e022_a_hook_names_no_payload_and_w021_a_published_secret(note_hooks: Any) -> None:
    from django_sse.checks import check_hooks

    note_hooks(channels="public")  # names nothing
    note_hooks(channels="public", fields=["text", "api_key", "reset_token", "pin"])
    note_hooks(channels="public", fields=["text", "spinner"])  # "pin" only as a word
    # (E021 also reports that Note has no such fields: names are what W021 reads.)
    messages = [m for m in check_hooks() if m.id != "django_sse.E021"]
    assert ids(messages) == ["django_sse.E022", "django_sse.W021"]
    assert "names no payload" in messages[0].msg
    assert "'api_key', 'reset_token', 'pin'" in messages[1].msg


def test_e030_notify_users_mixin_on_an_admin_that_is_not_the_users() -> None:
    from django.contrib import admin

    from django_sse.admin import BroadcastMixin, NotifyUsersMixin
    from tests.testapp.models import Note

    class NoteAdmin(NotifyUsersMixin, admin.ModelAdmin):  # type: ignore[type-arg]
        pass

    class FineAdmin(BroadcastMixin, admin.ModelAdmin):  # type: ignore[type-arg]
        pass

    site = admin.AdminSite(name="checks")
    [message] = [m for m in NoteAdmin(Note, site).check() if m.id.startswith("django_sse")]
    assert ids([message]) == ["django_sse.E030"] and "testapp.Note" in message.msg
    assert [m for m in FineAdmin(Note, site).check() if m.id.startswith("django_sse")] == []
    # The test project's own User admin passes.
    assert not [m for m in admin.site.check(None) if str(m.id).startswith("django_sse")]


def test_w012_signed_cookie_sessions_cannot_be_ended_server_side() -> None:
    from django_sse.sessions import check_session_engine

    assert check_session_engine() == []
    with override_settings(SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies"):
        assert ids(check_session_engine()) == ["django_sse.W012"]
