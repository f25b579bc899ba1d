from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from django_sse import send_event

from .forms import AnnouncementForm
from .sse import CHANNEL, EVENT


def can_announce(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def render_index(
    request: HttpRequest, form: AnnouncementForm | None = None, status: int = 200
) -> HttpResponse:
    context = {
        "can_announce": can_announce(request.user),
        "form": form or AnnouncementForm(),
    }
    return render(request, "announcements/index.html", context, status=status)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The live page: an EventSource on the "announcements" channel."""
    return render_index(request)


@require_POST
def send(request: HttpRequest) -> HttpResponse:
    """Publish an announcement to every open page, then go back to it."""
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("announcements:index"))
    if not can_announce(request.user):
        raise PermissionDenied("Only staff users can send announcements.")
    form = AnnouncementForm(request.POST)
    if not form.is_valid():
        return render_index(request, form, status=400)
    send_event(
        CHANNEL,
        EVENT,
        {
            "text": form.cleaned_data["text"],
            "author": request.user.get_username(),
            "sent_at": timezone.now().isoformat(timespec="seconds"),
        },
    )
    messages.success(request, "Sent.")
    return redirect("announcements:index")


@login_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    """The signed-in user's notifications: kept in the database, live on the page."""
    return render(request, "announcements/inbox.html")
