"""Test-only endpoints, routed by tests/urls.py and never by the package."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model, login, logout
from django.contrib.auth.models import Permission
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
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
    if expiry := request.GET.get("expiry"):
        request.session.set_expiry(int(expiry))
    return JsonResponse({"pk": user.pk})


def page(request: HttpRequest) -> HttpResponse:
    """An empty page, for browser tests to run scripts in."""
    return HttpResponse("<!doctype html><title>test</title>")


def csrf(request: HttpRequest) -> HttpResponse:
    """Set the CSRF cookie and return the token a page would embed."""
    return JsonResponse({"csrftoken": get_token(request)})


def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return JsonResponse({"ok": True})


@csrf_exempt
def account(request: HttpRequest) -> HttpResponse:
    """``?username=x``: a DRF token for the user; ``&active=0`` deactivates it;
    ``&revoke=<channel or *>`` calls ``revoke()``."""
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.get(username=request.GET["username"])
    if request.GET.get("active") == "0":
        user.is_active = False
        user.save()
    if (channel := request.GET.get("revoke")) is not None:
        revoke(user, None if channel == "*" else channel)
    token, _ = Token.objects.get_or_create(user=user)
    return JsonResponse({"pk": user.pk, "token": token.key})


@csrf_exempt
async def publish(request: HttpRequest) -> HttpResponse:
    """Publish ``count`` events from inside the server process (in-memory layer)."""
    body = json.loads(request.body)
    for i in range(int(body.get("count", 1))):
        data = body.get("data", {"n": i})
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
