"""``notify()``'s inbox half: one bulk insert for any number of recipients."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from .events import Event, build_event

NOTIFICATION_EVENT = "notification"
#: Rows per INSERT of ``bulk_create``: 13 columns each, well under every
#: database's parameter limit.
BATCH_SIZE = 500
_BIGGEST = 2**63 - 1


def _generic(obj: Any) -> tuple[Any, str]:
    if obj is None:
        return None, ""
    if getattr(obj, "pk", None) is None:
        raise ValueError(f"actor and target must be saved model instances, got {obj!r:.60}")
    return ContentType.objects.get_for_model(obj), str(obj.pk)


def persist_notifications(
    users: list[Any], data: dict[str, Any], actor: Any, target: Any, using: str
) -> list[Event]:
    """Store an inbox item per user and, on commit, publish each one's
    ``notification`` event with its recipient's new unread count."""
    from .inbox import _text, change, item_data
    from .models import InboxItem

    pks = [user.pk for user in users]
    if not pks:
        return []
    extra = {k: v for k, v in data.items() if k not in ("message", "level", "url")}
    actor_type, actor_id = _generic(actor)
    target_type, target_id = _generic(target)
    now = timezone.now()
    # Validate before anything is stored: the event as it will be, with the
    # longest id and count (a bad payload must not cost a rolled-back insert).
    build_event(
        f"user:{pks[0]}",
        NOTIFICATION_EVENT,
        {
            **data,
            "id": _BIGGEST,
            "created": now,
            "read_at": None,
            "actor": _text(actor),
            "target": _text(target),
            "unread": _BIGGEST,
        },
    )

    def apply() -> list[InboxItem]:
        rows = [
            InboxItem(
                recipient_id=pk,
                message=data["message"],
                level=data["level"],
                url=data["url"] or "",
                actor_type=actor_type,
                actor_id=actor_id,
                target_type=target_type,
                target_id=target_id,
                data=extra,
                created=now,
            )
            for pk in pks
        ]
        return InboxItem._default_manager.using(using).bulk_create(rows, batch_size=BATCH_SIZE)

    def describe(created: list[InboxItem], unread: dict[Any, int]) -> list[tuple[str, str, Any]]:
        return [
            (
                f"user:{item.recipient_id}",
                NOTIFICATION_EVENT,
                {
                    **item_data(item, actor=actor, target=target),
                    "unread": unread[item.recipient_id],
                },
            )
            for item in created
        ]

    return change(pks, apply, describe, using)[1]
