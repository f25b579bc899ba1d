"""Test-only endpoints, routed by tests/urls.py and never by the package."""

from __future__ import annotations

import json
import sys

from django.contrib.auth import get_user_model, login, logout
from django.contrib.auth.models import Permission
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.csrf import csrf_exempt

from django_sse import asend_event, revoke, send_event
from django_sse.hub import local_hubs


def login_as(request: HttpRequest) -> HttpResponse:
    """Create (or reuse) a user and log in: ``?username=x&staff=1&perm=app.code``
    (``perm`` may be repeated)."""
    User = get_user_model()
    user, _ = User.objects.get_or_create(username=request.GET["username"])
    user.is_staff = request.GET.get("staff") == "1"
    user.save()
    for perm in request.GET.getlist("perm"):
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return JsonResponse({"pk": user.pk})


@csrf_exempt
async def publish(request: HttpRequest) -> HttpResponse:
    """Publish ``count`` events from inside the server process (in-memory layer)."""
    body = json.loads(request.body)
    for i in range(int(body.get("count", 1))):
        data = body.get("data", {"n": i})
        if body.get("markup"):
            data = mark_safe(data)  # markup, as render_to_string returns it
        await asend_event(body["channel"], body.get("event", "message"), data)
    return JsonResponse({"ok": True})


@csrf_exempt
def publish_sync(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body)
    send_event(body["channel"], body.get("event", "message"), body.get("data"))
    return JsonResponse({"ok": True})


async def stats(request: HttpRequest) -> HttpResponse:
    """Hub counters of this server process; ``?channel=x`` adds its subscriber count."""
    totals: dict[str, int] = {}
    for hub in local_hubs():
        for key, value in hub.stats().items():
            totals[key] = totals.get(key, 0) + value
        if channel := request.GET.get("channel"):
            totals["subscribers"] = totals.get("subscribers", 0) + hub.subscribers(channel)
    totals.setdefault("subscribers", 0)
    return JsonResponse(totals)


def imported(request: HttpRequest) -> HttpResponse:
    """Whether this server process has imported ``?module=name``."""
    return JsonResponse({"imported": request.GET["module"] in sys.modules})


def page(request: HttpRequest) -> HttpResponse:
    """A page using ``{% sse_script %}``: ``?channel=a&channel=b&share=0&retry=100``."""
    context = {
        "channels": request.GET.getlist("channel"),
        "share": request.GET.get("share") != "0",
        "own_channel": request.GET.get("own") != "0",
        "retry_base": int(request.GET.get("retry", "1000")),
    }
    return render(request, "testapp/page.html", context)


def presence_page(request: HttpRequest) -> HttpResponse:
    """A page with ``{% sse_presence %}``: ``?channel=lobby:x&others=1&share=0``."""
    context = {
        "channel": request.GET["channel"],
        "others": request.GET.get("others") == "1",
        "share": request.GET.get("share") != "0",
    }
    return render(request, "testapp/presence.html", context)


FLAKY_FAILURES: dict[str, int] = {}


def flaky_stream(request: HttpRequest) -> HttpResponse:
    """``?fail=N&key=K``: answer 503 to the first N EventSource requests of key K,
    then redirect to the real stream, as a proxy in front of a restarting server
    would. A status probe (any other ``Accept``) gets the answer its EventSource got."""
    key = request.GET.get("key", "")
    fail = int(request.GET.get("fail", "0"))
    seen = FLAKY_FAILURES.get(key, 0)
    if "text/event-stream" in request.headers.get("Accept", ""):
        FLAKY_FAILURES[key] = seen + 1
        failing = seen < fail
    else:
        failing = 0 < seen <= fail
    if failing:
        return HttpResponse("upstream unavailable\n", status=503)
    query = request.GET.copy()
    for name in ("fail", "key"):
        query.pop(name, None)
    return HttpResponseRedirect("/sse/?" + query.urlencode(), status=307)


def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return JsonResponse({"ok": True})


def drf_token(request: HttpRequest) -> HttpResponse:
    """A REST framework token for ``?username=x`` (created with the user if needed)."""
    from rest_framework.authtoken.models import Token

    user, _ = get_user_model().objects.get_or_create(username=request.GET["username"])
    token, _ = Token.objects.get_or_create(user=user)
    return JsonResponse({"key": token.key, "pk": user.pk})


def drf_token_delete(request: HttpRequest) -> HttpResponse:
    """REST framework's logout for ``?username=x``: its Token row is deleted."""
    from rest_framework.authtoken.models import Token

    Token.objects.filter(user__username=request.GET["username"]).delete()
    return JsonResponse({"ok": True})


def deactivate(request: HttpRequest) -> HttpResponse:
    user = get_user_model().objects.get(username=request.GET["username"])
    user.is_active = False
    user.save()
    return JsonResponse({"ok": True})


def revoke_view(request: HttpRequest) -> HttpResponse:
    """``?username=x&channel=c``: revoke from inside this server process."""
    user = get_user_model().objects.get(username=request.GET["username"])
    revoke(user, request.GET.get("channel"))
    return JsonResponse({"ok": True})


def bulk_edit(request: HttpRequest) -> HttpResponse:
    """``?key=K&count=N``: the bulk edit of tests/bulk_edit.py, in this server process."""
    from django_sse import debounce
    from tests.bulk_edit import edit

    took = edit(request.GET["key"], int(request.GET["count"]))
    return JsonResponse({"pending": debounce.debouncer().pending(), "edit_seconds": took})


@csrf_exempt
def publish_to_others(request: HttpRequest) -> HttpResponse:
    """``send_event(..., exclude=request)``; with ``"via": "context"``, inside
    ``excluding(request)`` as a model hook would publish."""
    from django_sse.exclude import excluding

    body = json.loads(request.body)
    if body.get("via") == "context":
        with excluding(request):
            send_event(body["channel"], "message", body.get("data"))
    else:
        send_event(body["channel"], "message", body.get("data"), exclude=request)
    return JsonResponse({"ok": True})


@csrf_exempt
def notify_to_others(request: HttpRequest) -> HttpResponse:
    """``notify(request.user, ..., exclude=request)``, persisted or not."""
    from django_sse import notify

    body = json.loads(request.body)
    notify(
        request.user, "to others", persist=body.get("persist", True), n=body["n"], exclude=request
    )
    return JsonResponse({"ok": True})


@csrf_exempt
async def apublish_to_others(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body)
    await asend_event(body["channel"], "message", body.get("data"), exclude=request)
    return JsonResponse({"ok": True})
