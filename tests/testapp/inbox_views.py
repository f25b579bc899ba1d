"""Test-only inbox endpoints and page (``/test/inbox/...``)."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from django_sse import inbox, notify


@csrf_exempt
def notify_view(request: HttpRequest) -> HttpResponse:
    """``POST {"username", "message", "url", "count", "extra"}``: notify from this process."""
    body = json.loads(request.body)
    user = get_user_model().objects.get(username=body["username"])
    ids = []
    for i in range(int(body.get("count", 1))):
        message = body.get("message", "note {n}").replace("{n}", str(i))
        [event] = notify(user, message, url=body.get("url"), **body.get("extra", {}))
        ids.append(json.loads(event.payload)["id"])
    return JsonResponse({"ids": ids, "unread": inbox.unread_count(user)})


@csrf_exempt
def read_all_view(request: HttpRequest) -> HttpResponse:
    """``POST {"username"}``: mark all read from this process, as a worker would."""
    user = get_user_model().objects.get(username=json.loads(request.body)["username"])
    return JsonResponse({"changed": inbox.mark_all_read(user)})


def page(request: HttpRequest) -> HttpResponse:
    """A page with ``{% sse_inbox_badge %}`` and ``{% sse_inbox_list %}``: ``?share=0``."""
    return render(request, "testapp/inbox.html", {"share": request.GET.get("share") != "0"})


urlpatterns = [
    path("notify/", notify_view),
    path("read-all/", read_all_view),
    path("page/", page),
]
