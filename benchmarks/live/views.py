"""One view factory for both libraries, so both pay the same view around the call."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt


def timed_send_view(send: Callable[[str, str, Any], Any]) -> Callable[[HttpRequest], HttpResponse]:
    """A sync view calling ``send(channel, "bench", {"n": i})`` ``count`` times;
    answers each call's duration in ms. Under ASGI, Django runs it in its
    sync thread, as it runs any sync view that publishes."""

    @csrf_exempt
    def view(request: HttpRequest) -> HttpResponse:
        body = json.loads(request.body)
        times = []
        for i in range(int(body["count"])):
            started = time.perf_counter()
            send(body["channel"], "bench", {"n": i})
            times.append((time.perf_counter() - started) * 1000)
        return JsonResponse({"ms": times})

    return view
