"""The inbox in the admin: browse items, mark them read or delete them.

Items are created by ``notify()``, not in the admin, and changed only through
:mod:`django_sse.inbox`, so that the recipients' open pages hear of it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import inbox
from .models import InboxItem


def _by_user(queryset: QuerySet[InboxItem]) -> dict[Any, list[int]]:
    found: dict[Any, list[int]] = defaultdict(list)
    for pk, user in queryset.values_list("pk", "recipient"):
        found[user].append(pk)
    return found


class _Recipient:
    """As much of a user as the inbox API needs."""

    is_authenticated = True

    def __init__(self, pk: Any) -> None:
        self.pk = pk


@admin.register(InboxItem)
class InboxItemAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("message", "recipient", "level", "created", "read_at")
    list_filter = ("level", ("read_at", admin.EmptyFieldListFilter), "created")
    search_fields = ("message",)
    list_select_related = ("recipient",)
    date_hierarchy = "created"
    readonly_fields = [f.name for f in InboxItem._meta.fields]
    actions = ["mark_read", "delete_live"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # notify() creates items

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # read-only: changes go through the actions

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        found = super().get_actions(request)
        # Django's delete sends no inbox event: the badges would keep counting.
        found.pop("delete_selected", None)
        return found

    def delete_model(self, request: HttpRequest, obj: InboxItem) -> None:
        inbox.delete(_Recipient(obj.recipient_id), [obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[InboxItem]) -> None:
        for user, ids in _by_user(queryset).items():
            for start in range(0, len(ids), inbox.MAX_IDS):
                inbox.delete(_Recipient(user), ids[start : start + inbox.MAX_IDS])

    def has_mark_read_permission(self, request: HttpRequest) -> bool:
        # Marking read changes items: Django's change permission, although
        # the admin's form is read-only (has_change_permission).
        codename = get_permission_codename("change", self.opts)
        return bool(request.user.has_perm(f"{self.opts.app_label}.{codename}"))

    @admin.action(description=_("Mark selected items read"), permissions=["mark_read"])
    def mark_read(self, request: HttpRequest, queryset: QuerySet[InboxItem]) -> None:
        changed = 0
        for user, ids in _by_user(queryset).items():
            for start in range(0, len(ids), inbox.MAX_IDS):
                changed += inbox.mark_read(_Recipient(user), ids[start : start + inbox.MAX_IDS])
        message = ngettext("Marked %d item read.", "Marked %d items read.", changed) % changed
        self.message_user(request, message, messages.SUCCESS)

    @admin.action(description=_("Delete selected items"), permissions=["delete"])
    def delete_live(self, request: HttpRequest, queryset: QuerySet[InboxItem]) -> None:
        count = queryset.count()
        self.delete_queryset(request, queryset)
        message = ngettext("Deleted %d item.", "Deleted %d items.", count) % count
        self.message_user(request, message, messages.SUCCESS)
