"""The admin's Live page: open streams per process, recent events, a publish form.

Routed by ``django_sse.urls`` as ``live/`` (URL name ``django_sse:live``) when
``django.contrib.admin`` is installed. Staff with the permission
``django_sse.view_live`` see it; payloads are shown only for channels the
viewing user may read by the channel's read policy, and the publish form runs
the REST endpoint's checks (``django_sse.publish_event``, then the channel's
publish policy).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods

from . import live
from . import store as history
from .channels import PUBLISH_PERMISSION, ChannelError, registry
from .events import build_event
from .names import channel_name_error
from .publish import send_event

logger = logging.getLogger("django_sse")

PERMISSION = "django_sse.view_live"
#: Events shown for the chosen channel, newest first.
RECENT = 20
#: Characters of a payload shown; the rest is cut.
PAYLOAD_SHOWN = 2000


class PublishForm(forms.Form):
    channel = forms.CharField(label=_("Channel"), max_length=100, strip=False)
    event = forms.CharField(label=_("Event"), max_length=200, initial="message", strip=False)
    payload = forms.CharField(
        label=_("Data (JSON)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("A JSON value; empty sends null."),
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_channel(self) -> str:
        name: str = self.cleaned_data["channel"]
        try:
            # The REST endpoint's check: the channel's publish policy.
            registry.authorize_publish(self.user, name)
        except ChannelError as exc:
            raise forms.ValidationError(exc.reason) from None
        return name

    def clean_payload(self) -> Any:
        text: str = self.cleaned_data["payload"]
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise forms.ValidationError(f"not JSON: {exc}"[:200]) from None

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if {"channel", "event"} <= cleaned.keys():
            try:
                build_event(cleaned["channel"], cleaned["event"], cleaned.get("payload"))
            except (TypeError, ValueError) as exc:
                raise forms.ValidationError(str(exc)) from None
        return cleaned


@dataclass
class Recent:
    """The chosen channel's last events, or why there are none to show."""

    channel: str
    rows: list[tuple[int, str | None, str | None]]
    readable: bool
    note: str | None = None


def _may_read(user: Any, channel: str) -> bool:
    try:
        async_to_sync(registry.authorize)(user, channel)
    except ChannelError:
        return False
    return True


def recent_events(user: Any, channel: str) -> Recent:
    """The last :data:`RECENT` events of ``channel``, payloads only if ``user`` may read it."""
    error = channel_name_error(channel)
    if error is not None:
        return Recent(channel, [], False, error)
    if registry.resolve(channel) is None:
        return Recent(channel, [], False, f"channel {channel!r} matches no registered channel")
    store = history.get_store()
    if store is None:
        return Recent(channel, [], False, "no history is kept (SSE_STORE is None)")
    if not registry.is_stored(channel):
        return Recent(channel, [], False, "an ephemeral channel: its events are not stored")
    readable = _may_read(user, channel)
    try:
        head = store.heads([channel])[channel]
        records = store.read({channel: max(head - RECENT, 0)}, RECENT)
    except Exception as exc:
        logger.warning("The Live page could not read the event store: %s", exc)
        return Recent(channel, [], readable, "the event store is unavailable")
    # An event's name says what happened: hidden with its payload.
    rows: list[tuple[int, str | None, str | None]] = [
        (r.seq, r.name, r.payload[:PAYLOAD_SHOWN]) if readable else (r.seq, None, None)
        for r in reversed(records)
    ]
    note = None if readable else "events hidden: you may not read this channel"
    return Recent(channel, rows, readable, note)


def _published(request: HttpRequest, user: Any, event: Any) -> HttpResponse:
    logger.info(
        "%s published %r on %r from the Live page", user.get_username(), event.name, event.channel
    )
    messages.success(request, f"Published {event.name!r} on {event.channel!r}.")
    return HttpResponseRedirect(f"{request.path}?{urlencode({'channel': event.channel})}")


# As the admin's own views (admin_view): never cached (channel names,
# payloads), and CSRF checked even in a project without the middleware.
@never_cache
@csrf_protect
@require_http_methods(["GET", "POST"])
def live_page(request: HttpRequest) -> HttpResponse:
    """The page (GET), and its publish form (POST)."""
    user: Any = request.user
    if not (user.is_active and user.is_staff):
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    if not user.has_perm(PERMISSION):
        raise PermissionDenied(f"you need the permission {PERMISSION!r}")
    can_publish = user.has_perm(PUBLISH_PERMISSION)
    form = PublishForm(user=user, initial={"channel": request.GET.get("channel", "")})
    if request.method == "POST":
        if not can_publish:
            raise PermissionDenied(f"you need the permission {PUBLISH_PERMISSION!r}")
        form = PublishForm(request.POST, user=user)
        if form.is_valid():
            data = form.cleaned_data
            try:
                event = send_event(data["channel"], data["event"], data["payload"])
            except Exception as exc:
                # The store or the layer failed: say so on the form, not as a 500.
                logger.exception("Publishing from the Live page failed")
                form.add_error(None, f"not published: {type(exc).__name__}: {exc}"[:300])
            else:
                return _published(request, user, event)
    reports, problem = async_to_sync(live.gather)()
    channel = request.GET.get("channel", "")
    context = {
        **admin.site.each_context(request),
        "title": _("Live streams"),
        "reports": reports,
        "problem": problem,
        "total_streams": sum(r.streams for r in reports),
        "total_channels": sum(r.channels for r in reports),
        "top": live.merged_top(reports),
        "recent": recent_events(user, channel) if channel else None,
        "form": form if can_publish else None,
        "wait": live.WAIT,
    }
    return TemplateResponse(request, "django_sse/live.html", context)
