"""The inbox endpoints over django-notifications' model (``notifications/`` under
``include("django_sse.urls")``), for ``DjangoSSE.inbox`` on bridge pages."""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS

from .bridge import _publish, item, model, soft_delete, unread


def _mine(user: Any) -> Any:
    qs = model()._default_manager.filter(recipient_id=user.pk)
    return qs.filter(deleted=False) if soft_delete() else qs


class NotificationsBackend:
    @staticmethod
    def page(user: Any, before: int | None, limit: int, unread_only: bool) -> dict[str, Any]:
        qs = unread(user.pk) if unread_only else _mine(user)
        if before is not None:
            qs = qs.filter(id__lt=before)
        rows = list(
            qs.order_by("-id").prefetch_related("actor", "target", "action_object")[: limit + 1]
        )
        return {
            "items": [item(n) for n in rows[:limit]],
            "unread": NotificationsBackend.unread_count(user),
            "next": rows[limit - 1].pk if len(rows) > limit else None,
        }

    @staticmethod
    def unread_count(user: Any) -> int:
        return int(unread(user.pk).count())

    @staticmethod
    def _ids_changed(user: Any, ids: list[int], action: str, **fields: Any) -> int:
        qs = _mine(user).filter(id__in=ids)
        if "unread" in fields:
            qs = qs.filter(unread=True)
        found = list(qs.values_list("id", flat=True))
        if found:
            # update(): no post_save per row; one event for them all.
            model()._default_manager.filter(id__in=found).update(**fields)
            _publish([user.pk], {user.pk: [{"action": action, "ids": found}]})
        return len(found)

    @staticmethod
    def mark_read(user: Any, ids: list[int]) -> int:
        return NotificationsBackend._ids_changed(user, ids, "read", unread=False)

    @staticmethod
    def mark_all_read(user: Any) -> int:
        # The package's own method, which the bridge wraps to publish.
        return int(model()._default_manager.filter(recipient_id=user.pk).mark_all_as_read())

    @staticmethod
    def delete(user: Any, ids: list[int]) -> int:
        if soft_delete():
            return NotificationsBackend._ids_changed(user, ids, "delete", deleted=True)
        found = list(_mine(user).filter(id__in=ids).values_list("id", flat=True))
        if found:
            model()._default_manager.filter(id__in=found)._raw_delete(DEFAULT_DB_ALIAS)
            _publish([user.pk], {user.pk: [{"action": "delete", "ids": found}]})
        return len(found)
