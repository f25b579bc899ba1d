"""Publishing and stream counting from inside the peer's server process."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django_eventstream import send_event  # type: ignore[import-untyped]
from django_eventstream.views import get_listener_manager  # type: ignore[import-untyped]


@csrf_exempt
def publish(request: HttpRequest) -> HttpResponse:
    """The body of django_sse's ``/test/publish/``: ``count`` events, or one ``data``."""
    body = json.loads(request.body)
    for i in range(int(body.get("count", 1))):
        send_event(body["channel"], body.get("event", "message"), body.get("data", {"n": i}))
    return JsonResponse({"ok": True})


def stats(request: HttpRequest) -> HttpResponse:
    manager = get_listener_manager()
    with manager.lock:
        listeners = set().union(*manager.listeners_by_channel.values())
    return JsonResponse({"streams": len(listeners)})
