"""Live updates for django-notifications (``django-notifications-community``).

Add ``"django_sse.contrib.notifications"`` to ``INSTALLED_APPS`` after
``"notifications"``. Then ``notify.send(...)``, ``mark_as_read()``,
``mark_as_unread()``, the ``mark_all_as_*`` queryset methods, deletes and the
package's own views publish an ``live-notify`` event on each recipient's
private channel, with the recipient's new unread count, and
``{% load django_sse_notifications %}`` gives drop-ins for
``{% live_notify_badge %}`` and ``{% live_notify_list %}`` that stay live
without polling. See docs/migrating-from-django-notifications.rst.
"""

from __future__ import annotations

from typing import Any

__all__ = ["publish_counts"]


def publish_counts(users: Any) -> None:
    """Tell ``users`` (users or pks) their new count after a change the bridge
    cannot see: ``Notification.objects.filter(...).update(unread=False)``,
    ``bulk_create()`` outside ``notify.send``, raw SQL."""
    from .bridge import publish_counts as publish

    publish([getattr(user, "pk", user) for user in users])
