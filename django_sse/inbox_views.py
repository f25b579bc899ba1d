"""The inbox endpoints, routed by ``django_sse.urls`` under ``inbox/``.

``GET inbox/`` lists the signed-in user's items (newest first, ``?before=<id>``
for the next page, ``?unread=1`` for unread ones), ``GET inbox/count/`` gives
the unread count, ``POST inbox/read/``, ``inbox/read-all/`` and
``inbox/delete/`` change items (``ids=1&ids=2`` or JSON ``{"ids": [1, 2]}``).

Who is asking is decided as for streams (``SSE_AUTHENTICATION_CLASSES``: the
session, REST framework classes); a session user's POST must pass Django's
CSRF check. A user only ever sees and changes their own items: every query
filters by the authenticated user, and another user's id is simply not found.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import dbthreads, inbox, sessions
from .auth import authenticate_classes
from .channels import ChannelError
from .conf import conf
from .views import _cors, _csrf_failure, error_response

#: Largest ``?limit=``.
MAX_PAGE = 100
_ID = re.compile(r"[1-9][0-9]{0,18}")
#: The largest id a database column holds (a signed 64-bit integer).
MAX_ID = 2**63 - 1


def _int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not _ID.fullmatch(value) or int(value) > MAX_ID:
        raise ChannelError(400, f"{name} must be a positive integer, got {value[:40]!r}")
    return int(value)


def _ids(request: HttpRequest) -> list[int]:
    if (request.content_type or "") == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, RecursionError):
            raise ChannelError(400, "the body is not valid JSON") from None
        raw = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(raw, list):
            raise ChannelError(400, 'send {"ids": [1, 2, ...]}')
        values = [str(v) if isinstance(v, int) and not isinstance(v, bool) else "x" for v in raw]
    else:
        values = request.POST.getlist("ids")
    if not values:
        raise ChannelError(400, 'no ids given: send ids=1&ids=2 or {"ids": [1, 2]}')
    if len(values) > inbox.MAX_IDS:
        raise ChannelError(400, f"at most {inbox.MAX_IDS} ids per request")
    ids = []
    for value in values:
        found = _int(value, "every id")
        if found is None:  # an empty value
            raise ChannelError(400, "every id must be a positive integer, got ''")
        ids.append(found)
    return ids


class InboxBackend:
    """What the endpoints read and change: the inbox (``django_sse.inbox``).
    The django-notifications bridge serves the same endpoints on its model."""

    @staticmethod
    def page(user: Any, before: int | None, limit: int, unread: bool) -> dict[str, Any]:
        qs = inbox.items(user, unread=True if unread else None)
        if before is not None:
            qs = qs.filter(id__lt=before)
        rows = list(qs[: limit + 1])
        return {
            "items": [inbox.item_data(item) for item in rows[:limit]],
            "unread": inbox.unread_count(user),
            "next": rows[limit - 1].pk if len(rows) > limit else None,
        }

    unread_count = staticmethod(inbox.unread_count)
    mark_read = staticmethod(inbox.mark_read)
    mark_all_read = staticmethod(inbox.mark_all_read)
    delete = staticmethod(inbox.delete)


def _change(backend: Any, user: Any, action: str, ids: list[int]) -> dict[str, Any]:
    if action == "read":
        changed = backend.mark_read(user, ids)
    elif action == "delete":
        changed = backend.delete(user, ids)
    else:
        changed = backend.mark_all_read(user)
    return {"changed": changed, "unread": backend.unread_count(user)}


def _answer(body: dict[str, Any], headers: dict[str, str]) -> JsonResponse:
    response = JsonResponse(body, headers=headers)
    response["Cache-Control"] = "no-store"  # a user's own items: never in a shared cache
    return response


async def _user(
    request: HttpRequest, method: str
) -> tuple[Any, HttpResponseBase | None, dict[str, str]]:
    early, headers = _cors(request, method)
    if early is not None:
        return None, early, headers
    identity = await authenticate_classes(request)
    if identity.owner is None:
        raise ChannelError(403, "log in to read your inbox")
    # Any reader whose credential is a session cookie (ours, or REST
    # framework's SessionAuthentication) carries ambient authority: CSRF.
    from_session = identity.via == "session" or (
        identity.session_key is not None and not sessions.is_credential(identity.session_key)
    )
    if method == "POST" and from_session:
        failure = _csrf_failure(request)
        if failure is not None:
            for key, value in headers.items():
                failure[key] = value
            return None, failure, headers
    return identity.user, None, headers


def make_views(backend: Any) -> dict[str, Any]:
    """The five endpoint views over ``backend`` (see :class:`InboxBackend`)."""

    # Not Django's CSRF middleware: it would refuse a REST framework token
    # client, which carries no ambient authority; session users are checked
    # in _user(). Anonymous requests get a 403 with the reason, never a redirect.
    @login_not_required
    @csrf_exempt
    async def items(request: HttpRequest) -> HttpResponseBase:
        """``GET ?before=<id>&limit=20&unread=1``: a page of items, newest first."""
        try:
            user, early, headers = await _user(request, "GET")
            if early is not None:
                return early
            before = _int(request.GET.get("before"), "before")
            limit = _int(request.GET.get("limit"), "limit") or conf.SSE_INBOX_PAGE_SIZE
            if limit > MAX_PAGE:
                raise ChannelError(400, f"limit is at most {MAX_PAGE}")
            unread = request.GET.get("unread") in ("1", "true")
        except ChannelError as exc:
            return error_response(exc.status, exc.reason)
        return _answer(await dbthreads.run(backend.page, user, before, limit, unread), headers)

    @login_not_required
    @csrf_exempt
    async def count(request: HttpRequest) -> HttpResponseBase:
        """``GET count/``: ``{"unread": n}``."""
        try:
            user, early, headers = await _user(request, "GET")
            if early is not None:
                return early
        except ChannelError as exc:
            return error_response(exc.status, exc.reason)
        return _answer({"unread": await dbthreads.run(backend.unread_count, user)}, headers)

    def action(name: str) -> Any:
        @login_not_required
        @csrf_exempt
        async def view(request: HttpRequest) -> HttpResponseBase:
            try:
                user, early, headers = await _user(request, "POST")
                if early is not None:
                    return early
                ids = _ids(request) if name != "read_all" else []
            except ChannelError as exc:
                return error_response(exc.status, exc.reason)
            body = await dbthreads.run(_change, backend, user, name, ids, retry=False)
            return _answer(body, headers)

        view.__name__ = view.__qualname__ = name
        return view

    return {
        "items": items,
        "count": count,
        "mark_read": action("read"),
        "mark_all_read": action("read_all"),
        "delete": action("delete"),
    }


_views = make_views(InboxBackend)
items = _views["items"]
count = _views["count"]
mark_read = _views["mark_read"]
mark_all_read = _views["mark_all_read"]
delete = _views["delete"]
