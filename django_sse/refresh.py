"""Refresh hooks: what a save of a ``hooks.register(..., refresh=True)`` model does.

Each channel is marked once per transaction (per savepoint that survives),
when it commits; :mod:`django_sse.debounce` turns the marks of a window into
one event. Once per transaction, not per save: the commit also runs every
other on-commit callback of the transaction (the events of other hooks, one
per save), which can outlast a window, and a bulk edit must still be one
refresh per channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction

from .conf import conf
from .debounce import debouncer

if TYPE_CHECKING:
    from django.db import models

    from .hooks import Hook

#: What a refresh hook's event name says instead of created/updated/deleted.
REFRESH_ACTION = "refresh"
#: The longest window a hook may ask for: a refresh is meant to be prompt.
MAX_WINDOW = 60.0
# On each connection: (channel, event) -> (the marker registered with
# on_commit, its index in run_on_commit then), for the open transaction.
_MARKERS = "_django_sse_refresh_markers"


def setting_problem() -> str | None:
    """Why ``SSE_REFRESH_DEBOUNCE`` is unusable as a window, or ``None`` (the
    type and minimum are ``django_sse.E003``'s)."""
    window = getattr(settings, "SSE_REFRESH_DEBOUNCE", None)
    if isinstance(window, int | float) and not isinstance(window, bool) and window > MAX_WINDOW:
        return f"SSE_REFRESH_DEBOUNCE is {window!r} seconds, more than {MAX_WINDOW:g}."
    return None


def check_refresh(label: str, refresh: object, given: list[str]) -> None:
    """Refuse a ``refresh=`` hook option that is not ``True``/``False`` or a
    number of seconds in (0, :data:`MAX_WINDOW`], or comes with a payload."""
    if refresh is False:
        return
    if refresh is not True:
        if not isinstance(refresh, int | float) or isinstance(refresh, bool):
            raise TypeError(f"hook for {label}: refresh must be True or seconds, got {refresh!r}")
        if not 0 < refresh <= MAX_WINDOW:
            raise ValueError(
                f"hook for {label}: refresh must be more than 0 and at most "
                f"{MAX_WINDOW:g} seconds, got {refresh!r}"
            )
    if given:
        raise TypeError(
            f"hook for {label}: a refresh hook sends no payload, so it takes no {', '.join(given)}"
        )


def refresh_hook(hook: Hook, instance: models.Model, using: str | None) -> None:
    """Mark the channels of ``hook`` for ``instance`` once the transaction
    commits (at once outside one); a rollback marks nothing. Bad channel names
    raise here, at the save, not later in the debounce thread."""
    from .channels import registry
    from .events import build_event

    opts = hook.model._meta
    name = hook.event_name(REFRESH_ACTION)
    window = conf.SSE_REFRESH_DEBOUNCE if hook.refresh is True else float(hook.refresh)
    alias = using or instance._state.db or DEFAULT_DB_ALIAS
    for channel in hook.channel_names(instance):
        if _registered(alias, (channel, name)):
            continue
        # The model and channel only: one event stands for many rows.
        data = {"model": opts.label_lower, "channel": channel}
        build_event(channel, name, data)  # validates, as send_event would
        registry.require(channel)
        _register(alias, (channel, name), _marker(channel, name, data, window))


def _marker(channel: str, event: str, data: Any, window: float) -> Any:
    def mark() -> None:
        debouncer().mark(channel, event, data, window)

    return mark


def _registered(alias: str, key: tuple[str, str]) -> bool:
    """Whether the open transaction has a live marker for ``key`` already."""
    connection = transaction.get_connection(alias)
    if not connection.in_atomic_block:
        return False
    pending = connection.run_on_commit
    markers: dict[tuple[str, str], tuple[Any, int]] = connection.__dict__.setdefault(_MARKERS, {})
    if not pending:
        markers.clear()  # every marker ran or was dropped: a new transaction
        return False
    found = markers.get(key)
    if found is None:
        return False
    marker, index = found
    if index < len(pending) and pending[index][1] is marker:
        return True
    # A savepoint rollback dropped callbacks before it (or it with them): look
    # for it once, and remember where it is now.
    for index, entry in enumerate(pending):
        if entry[1] is marker:
            markers[key] = (marker, index)
            return True
    return False


def _register(alias: str, key: tuple[str, str], marker: Any) -> None:
    connection = transaction.get_connection(alias)
    if connection.in_atomic_block:
        markers = connection.__dict__.setdefault(_MARKERS, {})
        markers[key] = (marker, len(connection.run_on_commit))
    transaction.on_commit(marker, using=alias)


def forget_markers(alias: str) -> None:
    """Let the next saves of the open transaction register markers of their own.

    For :func:`django_sse.testing.run_on_commit`, which runs only the callbacks
    registered inside its block: a marker from before it (``setUpTestData``)
    would otherwise stand for the block's saves, and never run."""
    transaction.get_connection(alias).__dict__.pop(_MARKERS, None)
