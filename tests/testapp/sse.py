"""Channels of the test project (autodiscovered by django_sse)."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model

from django_sse import channels, hooks
from tests.testapp import lifecycle
from tests.testapp.models import Comment, Note, Ticket

channels.register("public", channels.PUBLIC)
channels.register("comments", channels.PUBLIC)
channels.register("news:{topic}", channels.PUBLIC)
channels.register("members", channels.AUTHENTICATED)
channels.register("staff", channels.STAFF)
channels.register("auditors", "auth.view_user")


@channels.register("ticket:{pk}")
def can_read_ticket(user: Any, pk: str) -> bool:
    # Even pks are readable by authenticated users, odd pks by nobody.
    return bool(user.is_authenticated) and int(pk) % 2 == 0


@channels.register("room:{name}")
async def can_read_room(user: Any, name: str) -> bool:
    return name.startswith("open")


def count_for(user: Any, name: str) -> dict[str, Any]:
    from tests.testapp.state import COUNTERS

    return {"count": COUNTERS.get(name, 0), "user": user.get_username()}


channels.register("counter:{name}", channels.PUBLIC, snapshot=count_for)
channels.register("typing:{room}", channels.PUBLIC, ephemeral=True)
channels.register("wall", channels.PUBLIC, publish=channels.PUBLIC)
channels.register("bulletin", channels.PUBLIC, publish=channels.NOBODY)


def can_post_to_board(user: Any, owner: str) -> bool:
    return bool(user.is_authenticated) and user.get_username() == owner


channels.register("board:{owner}", channels.PUBLIC, publish=can_post_to_board)

# Publishing needs a registered channel: the names the in-process tests use.
for name in ("a", "b", "m", "o", "w", "rc", "race", "exp", "out", "late", "life", "nobody-listens"):
    channels.register(name, channels.PUBLIC)
for name in ("tx", "tx2", "tx3", "cmd", "notes", "notes2", "notes-{n}", "notes:{key}"):
    channels.register(name, channels.PUBLIC)


hooks.register(Ticket, channels="ticket:{pk}", fields=["title", "status", "owner"])


@hooks.register(Comment, channels=["ticket:{ticket_id}", "comments"], actions=["created"])
def comment_payload(comment: Comment, action: str) -> dict[str, Any]:
    return {"text": comment.text, "ticket": comment.ticket_id}


# The fault-injection suite (tests/faults/) publishes only on these.
channels.register("fault:{name}", channels.PUBLIC)


@channels.register("slow:{name}")
def can_read_slow(user: Any, name: str) -> bool:
    # A slow sync check that queries the database, as real policies do.
    import time

    from django.contrib.auth.models import Permission

    time.sleep(0.2)
    return Permission.objects.filter(codename="view_user").exists()


if os.environ.get("SSE_TEST_REFRESH_HOOKS"):
    # Debounced refreshes across processes (tests/test_debounce_servers.py).
    hooks.register(Note, channels=["notes:{text}", "notes:{text}-{priority}"], refresh=True)

if os.environ.get("SSE_TEST_CARELESS_HOOKS"):
    # The integrator's mistake the attack tests try: a hook that names no fields.
    hooks.register(get_user_model(), channels="staff")

# Lifecycle signal receivers, when a server test asks for them.
lifecycle.connect()


# Presence channels: even pks readable by signed-in users (as ticket:{pk}).
@channels.register("desk:{pk}", presence=True)
def can_read_desk(user: Any, pk: str) -> bool:
    return bool(user.is_authenticated) and int(pk) % 2 == 0


def badge(user: Any) -> dict[str, Any]:
    # A member callable that leaves the pk out, and a name that is markup.
    return {"name": f"<b>{user.get_username()}</b>"}


channels.register("lobby:{name}", channels.PUBLIC, presence=True, member=badge)
