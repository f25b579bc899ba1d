"""Test-only endpoints for the JS helper's browser tests (``/test/js/...``)."""

from __future__ import annotations

import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path
from django.views.generic import DetailView

from tests.testapp import views

#: Times (time.monotonic()) of the requests each ``key`` made to ``busy``.
ATTEMPTS: dict[str, list[float]] = {}


@login_not_required
def page(request: HttpRequest) -> HttpResponse:
    """The test page, open to anonymous users under LoginRequiredMiddleware too."""
    context = {
        "channels": request.GET.getlist("channel"),
        "share": request.GET.get("share") != "0",
        "own_channel": request.GET.get("own") != "0",
        "retry_base": int(request.GET.get("retry", "1000")),
    }
    return render(request, "testapp/page.html", context)


@login_not_required
def login_page(request: HttpRequest) -> HttpResponse:
    """Where LoginRequiredMiddleware sends anonymous requests: a 200 HTML page."""
    return HttpResponse("<!doctype html><title>Log in</title><form></form>")


@login_not_required
def busy(request: HttpRequest) -> HttpResponse:
    """``?key=K&after=S``: always 429 with ``Retry-After: S``, counting requests."""
    ATTEMPTS.setdefault(request.GET.get("key", ""), []).append(time.monotonic())
    response = HttpResponse("too many streams\n", status=429, content_type="text/plain")
    response["Retry-After"] = request.GET.get("after", "2")
    return response


@login_not_required
def attempts(request: HttpRequest) -> HttpResponse:
    """The request times of ``?key=K``, in seconds from the first."""
    times = ATTEMPTS.get(request.GET.get("key", ""), [])
    return JsonResponse({"times": [t - times[0] for t in times]})


VENDOR = Path(__file__).resolve().parents[2] / "example_project/helpdesk/static/helpdesk/vendor"
HTMX_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script src="/test/js/vendor/htmx.min.js"></script>
<script src="/test/js/vendor/htmx-ext-sse.js"></script></head>
<body hx-ext="sse" sse-connect="/sse/?channel={channel}">
<div id="swap" sse-swap="fragment"></div>
<script>document.addEventListener("htmx:sseOpen", () => {{ window.htmxSseOpen = true; }});</script>
</body></html>"""


@login_not_required
def htmx_page(request: HttpRequest) -> HttpResponse:
    """htmx's SSE extension (as the example project vendors it) on ``?channel=``."""
    return HttpResponse(HTMX_PAGE.format(channel=request.GET.get("channel", "news:htmx")))


@login_not_required
def vendor(request: HttpRequest, name: str) -> HttpResponse:
    if name not in ("htmx.min.js", "htmx-ext-sse.js"):
        raise Http404(name)
    return HttpResponse((VENDOR / name).read_bytes(), content_type="text/javascript")


class UserDetail(DetailView):  # type: ignore[type-arg]
    """A profile page: its context has ``user`` = the *viewed* user."""

    model = get_user_model()
    template_name = "testapp/user_detail.html"


urlpatterns = [
    path("page/", page),
    path("login/", login_page),
    path("busy/", busy),
    path("attempts/", attempts),
    path("users/<int:pk>/", UserDetail.as_view()),
    path("htmx/", htmx_page),
    path("vendor/<str:name>", vendor),
    # /test/publish/, open under LoginRequiredMiddleware.
    path("publish/", login_not_required(views.publish)),
]
