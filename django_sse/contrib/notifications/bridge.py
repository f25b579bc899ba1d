"""What makes django-notifications live: receivers and two small wraps.

- ``notify.send`` creates its rows with ``bulk_create``, which sends no
  ``post_save``: the package's ``notify_handler`` is replaced by one that calls
  it and then publishes the rows it returns.
- ``mark_as_read()``, ``mark_as_unread()``, a soft delete and ``delete()`` save
  or delete one row: ``post_save`` and ``post_delete`` receivers publish.
- The ``mark_all_as_*`` queryset methods use ``update()``, which sends no
  signal: they are wrapped to publish the new counts of the users they touched.

Everything else that bypasses the model (a plain ``.update()``, raw SQL) is
invisible here: call :func:`django_sse.contrib.notifications.publish_counts`.

Events go through :func:`django_sse.inbox.change`, which locks the recipients'
user rows and counts after writing, so the last event a tab receives carries
the count of the last commit.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_delete, post_save

from ...inbox import change

logger = logging.getLogger("django_sse")

EVENT = "live-notify"
#: The methods of ``NotificationQuerySet`` that change rows with ``update()``.
BULK_METHODS = (
    "mark_all_as_read",
    "mark_all_as_unread",
    "mark_all_as_deleted",
    "mark_all_as_active",
)
_UID = "django_sse.contrib.notifications"


def model() -> Any:
    from notifications.swappable import load_notification_model

    return load_notification_model()


def soft_delete() -> bool:
    from notifications import settings as notifications_settings

    return bool(notifications_settings.get_config()["SOFT_DELETE"])


def unread(user_pk: Any) -> Any:
    """The package's own ``unread()``: soft-deleted rows do not count."""
    qs = model()._default_manager.filter(recipient_id=user_pk, unread=True)
    return qs.filter(deleted=False) if soft_delete() else qs


def counts(pks: Sequence[Any], using: str = DEFAULT_DB_ALIAS) -> dict[Any, int]:
    from django.db.models import Count

    qs = model()._default_manager.using(using).filter(recipient_id__in=list(pks), unread=True)
    if soft_delete():
        qs = qs.filter(deleted=False)
    found = dict(
        qs.order_by()
        .values("recipient_id")
        .annotate(n=Count("id"))
        .values_list("recipient_id", "n")
    )
    return {pk: found.get(pk, 0) for pk in pks}


def item(notification: Any) -> dict[str, Any]:
    """A notification as ``DjangoSSE.inbox`` shows it: text only, no link."""
    text = " ".join(
        str(part)
        for part in (
            notification.actor,
            notification.verb,
            notification.action_object,
            notification.target,
        )
        if part is not None
    )
    return {
        "id": notification.pk,
        "message": text[:500],
        "level": str(notification.level),
        "url": None,
        "created": notification.timestamp,
        "read": not notification.unread,
        "description": notification.description,
    }


def _publish(pks: Sequence[Any], payloads: dict[Any, list[dict[str, Any]]]) -> None:
    def describe(_: None, unread_counts: dict[Any, int]) -> list[tuple[str, str, Any]]:
        return [
            (f"user:{pk}", EVENT, {**payload, "unread": unread_counts[pk]})
            for pk in pks
            for payload in payloads.get(pk) or [{"action": "sync"}]
        ]

    try:
        change(list(pks), lambda: None, describe, count=counts)
    except Exception:
        # The notification is saved; a failed publish must not fail the caller
        # (notify.send from a view). The tab catches up on its next change.
        logger.warning("django_sse could not publish a django-notifications change", exc_info=True)


def publish_counts(pks: Sequence[Any]) -> None:
    _publish(list(dict.fromkeys(pks)), {})


def live_notify_handler(verb: Any, **kwargs: Any) -> Any:
    from notifications.base.models import notify_handler

    created = notify_handler(verb, **kwargs)
    by_user: dict[Any, list[dict[str, Any]]] = {}
    # One actor, verb and target for every recipient: their text is read once,
    # not through three generic relations per row.
    shown = item(created[0]) if created else {}
    for notification in created:
        if notification.pk is None:  # a backend that returns no ids from bulk_create
            by_user.setdefault(notification.recipient_id, [])
            continue
        by_user.setdefault(notification.recipient_id, []).append(
            {"action": "new", "item": {**shown, "id": notification.pk}}
        )
    _publish(list(by_user), by_user)
    return created


def saved(
    sender: Any, instance: Any, created: bool, update_fields: Any = None, **kwargs: Any
) -> None:
    if created:
        payload = {"action": "new", "item": item(instance)}
    elif update_fields is not None and not {"unread", "deleted"} & set(update_fields):
        return  # emailed, public, data: nothing a badge shows
    elif soft_delete() and instance.deleted:
        payload = {"action": "delete", "ids": [instance.pk]}
    else:
        payload = {"action": "unread" if instance.unread else "read", "ids": [instance.pk]}
    _publish([instance.recipient_id], {instance.recipient_id: [payload]})


def deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    _publish(
        [instance.recipient_id],
        {instance.recipient_id: [{"action": "delete", "ids": [instance.pk]}]},
    )


def _wrap(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: Any, recipient: Any = None) -> Any:
        scope = self.filter(recipient=recipient) if recipient else self
        pks = list(scope.order_by().values_list("recipient_id", flat=True).distinct())
        result = method(self, recipient)
        if pks:
            publish_counts(pks)
        return result

    wrapper.__django_sse__ = True  # type: ignore[attr-defined]
    return wrapper


def connect() -> None:
    from notifications.base.models import NotificationQuerySet
    from notifications.signals import notify

    # Replace the package's handler (same dispatch_uid) with the publishing one.
    notify.disconnect(dispatch_uid="notifications.models.notification")
    notify.connect(live_notify_handler, dispatch_uid="notifications.models.notification")
    Notification = model()
    post_save.connect(saved, sender=Notification, dispatch_uid=_UID)
    post_delete.connect(deleted, sender=Notification, dispatch_uid=_UID)
    for name in BULK_METHODS:
        method = getattr(NotificationQuerySet, name)
        if not getattr(method, "__django_sse__", False):
            setattr(NotificationQuerySet, name, _wrap(method))
