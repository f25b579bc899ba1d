"""The inbox: notifications kept per user, with an unread count every tab agrees on.

The model (:class:`~django_sse.models.InboxItem`) is the truth. Every change
made here is published on the recipient's private channel
(:func:`~django_sse.user_channel`) and carries the recipient's new unread
count, a value and never a delta, so every open tab on every server process
converges, and a tab that resumes after being offline ends on the right count
when the stream replays what it missed.

Counts are right under concurrency because each change locks its recipients'
user rows (in primary-key order) before it writes, counts after writing, and
stores its events in the same transaction: two changes to one user's inbox
commit, and are numbered on the user's channel, one after the other, and the
last event a client receives carries the count of the last commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from . import dbthreads, metrics
from .channels import user_channel
from .events import Event
from .publish_batch import _build_all, _store_many, publish_many

if TYPE_CHECKING:
    from .models import InboxItem

__all__ = [
    "INBOX_EVENT",
    "adelete",
    "amark_all_read",
    "amark_read",
    "aunread_count",
    "delete",
    "item_data",
    "items",
    "mark_all_read",
    "mark_read",
    "publish_counts",
    "unread_count",
]

#: The event of every inbox change but a new item (that is ``notification``):
#: ``{"action": "read" | "read_all" | "delete" | "sync", "ids": [...], "unread": n}``.
INBOX_EVENT = "inbox"
#: Most ids one call of :func:`mark_read` or :func:`delete` takes.
MAX_IDS = 1000
#: Users per ``IN (...)`` list.
CHUNK = 500
#: Keys of an item's data that its fields use; ``notify(**extra)`` may not.
#: ``read`` is the shown state of the tags and ``DjangoSSE.inbox``.
ITEM_KEYS = frozenset(
    {"id", "message", "level", "url", "created", "read_at", "read", "actor", "target", "unread"}
)

T = TypeVar("T")


def _model() -> type[InboxItem]:
    from .models import InboxItem

    return InboxItem


def _pk(user: Any) -> Any:
    user_channel(user)  # a saved, authenticated user, or ValueError
    return user.pk


def clean_ids(ids: Iterable[Any]) -> list[int]:
    """``ids`` as a list of positive ints, or ``TypeError``/``ValueError``."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        raise TypeError("ids must be an iterable of integers")
    out: list[int] = []
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"inbox item ids are integers, got {value!r:.40}")
        if value < 1 or value > 2**63 - 1:
            raise ValueError(f"inbox item id out of range: {value}")
        out.append(value)
        if len(out) > MAX_IDS:
            raise ValueError(f"at most {MAX_IDS} ids per call")
    return list(dict.fromkeys(out))


def _text(obj: Any) -> str | None:
    return None if obj is None else str(obj)[:200]


def _safe_url(url: str) -> str | None:
    # notify() checked it, but a row saved another way (objects.create, an
    # import) did not: the list's href never takes an unchecked URL.
    from .notifications import validate_notification_url

    try:
        return validate_notification_url(url) if url else None
    except (TypeError, ValueError):
        return None


def item_data(item: InboxItem, *, actor: Any = None, target: Any = None) -> dict[str, Any]:
    """An item as the API and the ``notification`` event show it (a URL that
    ``notify()`` would refuse is shown as none)."""
    data = dict(item.data) if isinstance(item.data, dict) else {}
    data.update(
        id=item.pk,
        message=item.message,
        level=item.level,
        url=_safe_url(item.url),
        created=item.created,
        read_at=item.read_at,
        actor=_text(actor if actor is not None else (item.actor if item.actor_type_id else None)),
        target=_text(
            target if target is not None else (item.target if item.target_type_id else None)
        ),
    )
    return data


def _lock(pks: Sequence[Any], using: str) -> None:
    # Serializes the changes to each user's inbox (see the module docstring).
    # SQLite has no row locks, and needs none: it runs one writer at a time.
    if not connections[using].features.has_select_for_update:
        return
    manager = get_user_model()._default_manager.using(using)
    # One global order (not per chunk): two bulk changes that share users
    # then wait for each other instead of deadlocking.
    ordered = sorted(pks)
    for start in range(0, len(ordered), CHUNK):
        batch = ordered[start : start + CHUNK]
        list(manager.select_for_update().filter(pk__in=batch).order_by("pk").values_list("pk"))


def counts(pks: Sequence[Any], using: str = DEFAULT_DB_ALIAS) -> dict[Any, int]:
    """Unread items of each user of ``pks`` (one query per 500 users)."""
    found: dict[Any, int] = {}
    manager = _model()._default_manager.using(using)
    for start in range(0, len(pks), CHUNK):
        rows = (
            manager.filter(recipient_id__in=pks[start : start + CHUNK], read_at__isnull=True)
            .order_by()
            .values("recipient_id")
            .annotate(n=Count("id"))
            .values_list("recipient_id", "n")
        )
        found.update(rows)
    return {pk: found.get(pk, 0) for pk in pks}


def change(
    pks: Sequence[Any],
    apply: Callable[[], T],
    describe: Callable[[T, dict[Any, int]], list[tuple[str, str, Any]]],
    using: str = DEFAULT_DB_ALIAS,
    count: Callable[[Sequence[Any], str], dict[Any, int]] | None = None,
) -> tuple[T, list[Event]]:
    """Run ``apply()`` with the users of ``pks`` locked, count their unread
    items, and store the events ``describe(result, counts)`` returns in the
    same transaction; publish them when it commits. Returns the result and
    the events. ``count`` counts unread items (default: :func:`counts`)."""
    pks = list(dict.fromkeys(pks))
    with transaction.atomic(using=using):
        _lock(pks, using)
        result = apply()
        specs = describe(result, (count or counts)(pks, using))
        # Validated and stored inside the transaction: a bad event, or a
        # database that fails here, rolls the change back with it.
        stored = _store_many(_build_all(specs))
        if stored:
            transaction.on_commit(lambda: publish_many(stored), using=using, robust=True)
        transaction.on_commit(lambda: _count(specs), using=using, robust=True)
    return result, stored


def _count(specs: list[tuple[str, str, Any]]) -> None:
    """The ``inbox_changes`` metric: one per user and committed change."""
    from .notifications import NOTIFICATION_EVENT

    figures = metrics.get()
    if figures.enabled:
        for _, name, data in specs:
            action = "new" if name == NOTIFICATION_EVENT else str(data.get("action", ""))
            figures.inc("inbox_changes", action=action)


def _event(pk: Any, payload: dict[str, Any]) -> tuple[str, str, Any]:
    return (f"user:{pk}", INBOX_EVENT, payload)


def unread_count(user: Any, *, using: str = DEFAULT_DB_ALIAS) -> int:
    """How many of ``user``'s inbox items are unread (read from the partial
    index of unread items)."""
    return counts([_pk(user)], using)[user.pk]


def items(user: Any, *, unread: bool | None = None, using: str = DEFAULT_DB_ALIAS) -> QuerySet[Any]:
    """``user``'s inbox items, newest first; ``unread=True`` only unread ones."""
    qs = _model()._default_manager.using(using).filter(recipient_id=_pk(user))
    if unread is not None:
        qs = qs.filter(read_at__isnull=unread)
    return qs.order_by("-id").prefetch_related("actor", "target")


def mark_read(user: Any, ids: Iterable[Any], *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Mark ``user``'s items among ``ids`` read; others' ids are ignored.

    Publishes ``inbox`` ``{"action": "read", "ids": [...], "unread": n}`` with
    the ids that changed. Returns how many changed."""
    pk, wanted = _pk(user), clean_ids(ids)
    now = timezone.now()

    def apply() -> list[int]:
        if not wanted:
            return []
        qs = _model()._default_manager.using(using)
        mine = qs.filter(recipient_id=pk, id__in=wanted, read_at__isnull=True)
        found = sorted(mine.values_list("id", flat=True))
        qs.filter(id__in=found).update(read_at=now)
        return found

    def describe(found: list[int], unread: dict[Any, int]) -> list[tuple[str, str, Any]]:
        if not found:
            return []
        return [_event(pk, {"action": "read", "ids": found, "unread": unread[pk]})]

    return len(change([pk], apply, describe, using)[0])


def mark_all_read(user: Any, *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Mark every unread item of ``user`` read; publishes ``{"action": "read_all"}``."""
    pk = _pk(user)

    def apply() -> int:
        qs = _model()._default_manager.using(using)
        return int(qs.filter(recipient_id=pk, read_at__isnull=True).update(read_at=timezone.now()))

    def describe(changed: int, unread: dict[Any, int]) -> list[tuple[str, str, Any]]:
        if not changed:
            return []
        return [_event(pk, {"action": "read_all", "unread": unread[pk]})]

    return change([pk], apply, describe, using)[0]


def delete(user: Any, ids: Iterable[Any], *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Delete ``user``'s items among ``ids``; others' ids are ignored.

    Publishes ``{"action": "delete", "ids": [...], "unread": n}``."""
    pk, wanted = _pk(user), clean_ids(ids)

    def apply() -> list[int]:
        if not wanted:
            return []
        qs = _model()._default_manager.using(using)
        found = sorted(qs.filter(recipient_id=pk, id__in=wanted).values_list("id", flat=True))
        # A raw delete: nothing refers to an item, and no signal is wanted.
        qs.filter(id__in=found)._raw_delete(using)
        return found

    def describe(found: list[int], unread: dict[Any, int]) -> list[tuple[str, str, Any]]:
        if not found:
            return []
        return [_event(pk, {"action": "delete", "ids": found, "unread": unread[pk]})]

    return len(change([pk], apply, describe, using)[0])


def publish_counts(user_pks: Iterable[Any], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Publish ``{"action": "sync", "unread": n}`` to each user of ``user_pks``:
    after a change made without this module (a queryset ``update()``, a prune),
    so that their tabs refetch the list and show the new count."""
    pks = list(dict.fromkeys(user_pks))
    if not pks:
        return

    def describe(_: None, unread: dict[Any, int]) -> list[tuple[str, str, Any]]:
        return [_event(pk, {"action": "sync", "unread": unread[pk]}) for pk in pks]

    change(pks, lambda: None, describe, using)


async def aunread_count(user: Any) -> int:
    """Async twin of :func:`unread_count`."""
    _pk(user)
    return await dbthreads.run(unread_count, user)


async def amark_read(user: Any, ids: Iterable[Any]) -> int:
    """Async twin of :func:`mark_read`."""
    _pk(user)
    return await dbthreads.run(mark_read, user, clean_ids(ids), retry=False)


async def amark_all_read(user: Any) -> int:
    """Async twin of :func:`mark_all_read`."""
    _pk(user)
    return await dbthreads.run(mark_all_read, user, retry=False)


async def adelete(user: Any, ids: Iterable[Any]) -> int:
    """Async twin of :func:`delete`."""
    _pk(user)
    return await dbthreads.run(delete, user, clean_ids(ids), retry=False)


def prune(now: datetime | None = None, *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Apply ``SSE_INBOX_MAX_AGE`` and ``SSE_INBOX_MAX_ITEMS``; return how many
    items were removed. Users who lost unread items get a ``sync`` event."""
    from .inbox_retention import prune as run

    return run(now, using=using)
