"""Test-only views for the django-notifications bridge (``/test/notifications/...``)."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def send(request: HttpRequest) -> HttpResponse:
    """``POST {"actor", "recipients": [names], "verb"}``: ``notify.send`` in this process."""
    from notifications.signals import notify

    body = json.loads(request.body)
    User = get_user_model()
    actor, _ = User.objects.get_or_create(username=body["actor"])
    recipients = list(User.objects.filter(username__in=body["recipients"]))
    results = notify.send(actor, recipient=recipients, verb=body.get("verb", "pinged you"))
    created = [n.pk for _, ns in results for n in ns]
    return JsonResponse({"ids": created})


@csrf_exempt
def bulk(request: HttpRequest) -> HttpResponse:
    """``POST {"username", "method"}``: a queryset method (``mark_all_as_read``...)."""
    from notifications.models import Notification

    body = json.loads(request.body)
    user = get_user_model().objects.get(username=body["username"])
    if body["method"] == "delete":
        count, _ = Notification.objects.filter(recipient=user).delete()
    elif body["method"] == "update":
        count = Notification.objects.filter(recipient=user).update(unread=False)
    else:
        count = getattr(Notification.objects.filter(recipient=user), body["method"])()
    return JsonResponse({"count": count})


def page(request: HttpRequest) -> HttpResponse:
    """The drop-in tags; ``?fetch=N`` for the list's size."""
    return render(
        request, "testapp/notifications.html", {"fetch": int(request.GET.get("fetch", 5))}
    )


urlpatterns = [path("send/", send), path("bulk/", bulk), path("page/", page)]
