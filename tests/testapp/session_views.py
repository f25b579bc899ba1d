"""Test-only endpoints that change sessions and users the ways Django does,
inside the server process: routed under ``/test/session/`` by tests/urls.py."""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.sessions.models import Session
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path


def change_password(request: HttpRequest) -> HttpResponse:
    """The logged-in user changes their password, as ``PasswordChangeView``
    does: with ``?update=1`` this session stays logged in
    (``update_session_auth_hash``); every other session of the user ends."""
    user = request.user
    assert user.is_authenticated
    user.set_password(request.GET.get("password", "n3w-pass-word"))
    user.save()
    if request.GET.get("update") == "1":
        update_session_auth_hash(request, user)
    return JsonResponse({"key": request.session.session_key})


def set_password(request: HttpRequest) -> HttpResponse:
    """``?username=x``: an administrator sets the user's password elsewhere."""
    user = get_user_model().objects.get(username=request.GET["username"])
    user.set_password(request.GET.get("password", "an0ther-pass"))
    user.save()
    return JsonResponse({"ok": True})


def cycle_key(request: HttpRequest) -> HttpResponse:
    """Rotate this session's key, keeping it (what ``login()`` does)."""
    old = request.session.session_key
    request.session.cycle_key()
    return JsonResponse({"old": old, "key": request.session.session_key})


def delete_session(request: HttpRequest) -> HttpResponse:
    """``?key=K``: delete the row as the admin's delete action does (a queryset)."""
    deleted, _ = Session.objects.filter(session_key=request.GET["key"]).delete()
    return JsonResponse({"deleted": deleted})


def flush_session(request: HttpRequest) -> HttpResponse:
    """``?key=K``: "log out everywhere": ``SessionStore(K).flush()``."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(request.GET["key"])
    store.load()
    store.flush()
    return JsonResponse({"ok": True})


def delete_user(request: HttpRequest) -> HttpResponse:
    get_user_model().objects.filter(username=request.GET["username"]).delete()
    return JsonResponse({"ok": True})


urlpatterns = [
    path("change-password/", change_password),
    path("set-password/", set_password),
    path("cycle-key/", cycle_key),
    path("delete-session/", delete_session),
    path("flush-session/", flush_session),
    path("delete-user/", delete_user),
]
