"""``notify()``'s inbox half: one bulk insert for any number of recipients."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import connections
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

    def item(pk: Any, item_id: int | None = None) -> InboxItem:
        return InboxItem(
            id=item_id,
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

    def apply() -> list[InboxItem]:
        if connections[using].vendor == "postgresql":
            ids = _insert_postgresql(
                pks, data, actor_type, actor_id, target_type, target_id, extra, now, using
            )
            return [item(pk, ids[pk]) for pk in pks]
        rows = [item(pk) for pk in pks]
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


def _insert_postgresql(
    pks: list[Any],
    data: dict[str, Any],
    actor_type: Any,
    actor_id: str,
    target_type: Any,
    target_id: str,
    extra: dict[str, Any],
    now: Any,
    using: str,
) -> dict[Any, int]:
    """One ``INSERT ... SELECT FROM unnest(pks)`` for every recipient: every
    row but the recipient is the same, so the statement has 10 parameters
    however many users, instead of 13 per row in batches of 500."""
    from .batch import column
    from .models import InboxItem

    conn = connections[using]
    recipient = InboxItem._meta.get_field("recipient")
    pk_type = recipient.target_field.db_type(conn)  # type: ignore[union-attr]
    names = [
        "recipient",
        "message",
        "level",
        "url",
        "actor_type",
        "actor_id",
        "target_type",
        "target_id",
        "data",
        "created",
    ]
    columns = ", ".join(column(InboxItem, name) for name in names)
    table = conn.ops.quote_name(InboxItem._meta.db_table)
    json_data = InboxItem._meta.get_field("data").get_db_prep_value(extra, conn)  # type: ignore[union-attr]
    with conn.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT r, %s, %s, %s, %s, %s, %s, %s, %s, %s "
            f"FROM unnest(%s::{pk_type}[]) AS r "
            f"RETURNING {column(InboxItem, 'recipient')}, {column(InboxItem, 'id')}",
            [
                data["message"],
                data["level"],
                data["url"] or "",
                getattr(actor_type, "pk", None),
                actor_id,
                getattr(target_type, "pk", None),
                target_id,
                json_data,
                now,
                list(pks),
            ],
        )
        return {user: int(pk) for user, pk in cursor.fetchall()}
