"""Helpers for testing code that publishes events, and for reading streams in tests.

::

    from django_sse.testing import capture_events

    def test_reply_updates_the_ticket(client, ticket):
        with capture_events(run_on_commit=True) as sent:
            client.post(f"/tickets/{ticket.pk}/reply/", {"text": "Fixed"})
        sent.assert_sent(f"ticket:{ticket.pk}", "helpdesk.ticket.updated", data__status="solved")

An event counts once it is published: stored (when its channel keeps history)
and handed to the channel layer. ``send_event`` inside ``atomic()`` publishes
on commit, so an event of a transaction that has not committed (or rolled
back) is not in ``sent``; ``run_on_commit=True`` runs the block's on-commit
callbacks at its end, as a commit would, inside tests that never commit
(``TestCase``, pytest-django's ``db`` fixture). See :doc:`/testing`.

pytest is not needed: the ``sse_events`` fixture lives in
:mod:`django_sse.pytest_plugin`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, overload

from django.db import DEFAULT_DB_ALIAS, transaction

from . import capture, debounce
from .events import Event
from .reader import StreamReader, stream_reader

__all__ = [
    "SentEvent",
    "SentEvents",
    "StreamReader",
    "capture_events",
    "flush_refreshes",
    "run_on_commit",
    "stream_reader",
]

_MISSING: Any = object()


@dataclass(frozen=True)
class SentEvent:
    """One published event as a test sees it."""

    channel: str
    event: str
    #: The payload decoded: the JSON value, or the markup of a ``SafeString``.
    data: Any
    #: Whether ``data`` was sent as markup (a ``SafeString``) rather than JSON.
    html: bool
    #: The payload as it went on the wire (the ``data:`` lines joined).
    payload: str
    id: str
    #: Its number in the channel's history, when the channel keeps history.
    seq: int | None

    @classmethod
    def from_event(cls, event: Event) -> SentEvent:
        try:
            data, html = json.loads(event.payload), False
        except ValueError:
            # Not JSON, so markup sent verbatim (events.encode_payload).
            data, html = event.payload, True
        return cls(event.channel, event.name, data, html, event.payload, event.id, event.seq)

    def __str__(self) -> str:
        shown = self.payload if len(self.payload) <= 200 else self.payload[:197] + "..."
        return f"{self.channel} {self.event} {shown}"


def _lookup(data: Any, path: str) -> Any:
    """``data["owner"]["name"]`` for ``"owner__name"``; list items by index."""
    value = data
    for key in path.split("__"):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return _MISSING
    return value


def _data_lookups(lookups: dict[str, Any]) -> dict[str, Any]:
    wrong = [name for name in lookups if not name.startswith("data__") or name == "data__"]
    if wrong:
        raise TypeError(
            f"unexpected keyword argument(s) {', '.join(sorted(wrong))}: "
            "look into the payload with data__<key>=value (data__owner__name=...)"
        )
    return {name[len("data__") :]: value for name, value in lookups.items()}


class SentEvents(Sequence[SentEvent]):
    """The events published while :func:`capture_events` was open, in order."""

    def __init__(self) -> None:
        self._events: list[SentEvent] = []
        self._lock = threading.Lock()

    def _add(self, event: Event) -> None:
        sent = SentEvent.from_event(event)
        with self._lock:
            self._events.append(sent)

    @overload
    def __getitem__(self, index: int) -> SentEvent: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[SentEvent]: ...
    def __getitem__(self, index: int | slice) -> SentEvent | Sequence[SentEvent]:
        with self._lock:
            return self._events[index]

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def __repr__(self) -> str:
        return f"<SentEvents: {len(self)} event(s)>"

    def clear(self) -> None:
        """Forget what was captured so far."""
        with self._lock:
            self._events.clear()

    def filter(
        self,
        channel: str | None = None,
        event: str | None = None,
        *,
        data: Any = _MISSING,
        **lookups: Any,
    ) -> list[SentEvent]:
        """The events on ``channel`` named ``event`` whose payload matches:
        ``data=`` the whole decoded payload, ``data__status="open"`` one key
        (``data__owner__name`` a nested one). ``None`` matches anything."""
        wanted = _data_lookups(lookups)
        return [
            sent
            for sent in self
            if (channel is None or sent.channel == channel)
            and (event is None or sent.event == event)
            and (data is _MISSING or sent.data == data)
            and all(_lookup(sent.data, path) == value for path, value in wanted.items())
        ]

    def assert_sent(
        self,
        channel: str | None = None,
        event: str | None = None,
        *,
        count: int | None = None,
        data: Any = _MISSING,
        **lookups: Any,
    ) -> SentEvent:
        """Fail unless an event matching :meth:`filter`'s arguments was sent
        (exactly ``count`` of them, if given); return the last that matched.

        The message lists what was sent instead."""
        matched = self.filter(channel, event, data=data, **lookups)
        if matched and (count is None or len(matched) == count):
            return matched[-1]
        wanted = self._describe(channel, event, data, lookups)
        found = f"{len(matched)} such event(s)" if count is not None else "no such event"
        expected = f"{count} event(s)" if count is not None else "an event"
        raise AssertionError(f"expected {expected} {wanted}, found {found}.\n{self._listing()}")

    def assert_nothing_sent(self, channel: str | None = None, event: str | None = None) -> None:
        """Fail if anything was sent (on ``channel``, named ``event``, if given)."""
        matched = self.filter(channel, event)
        if matched:
            wanted = self._describe(channel, event, _MISSING, {})
            raise AssertionError(
                f"expected no event {wanted}, found {len(matched)}.\n{self._listing()}"
            )

    @staticmethod
    def _describe(
        channel: str | None, event: str | None, data: Any, lookups: dict[str, Any]
    ) -> str:
        parts = []
        if channel is not None:
            parts.append(f"on channel {channel!r}")
        if event is not None:
            parts.append(f"named {event!r}")
        given = [f"data={data!r}"] if data is not _MISSING else []
        given.extend(f"{name}={value!r}" for name, value in sorted(lookups.items()))
        if given:
            parts.append("with " + ", ".join(given))
        return " ".join(parts) or "at all"

    def _listing(self) -> str:
        events = list(self)
        if not events:
            return "Nothing was sent."
        lines = [f"  {n}. {sent}" for n, sent in enumerate(events[:50], 1)]
        if len(events) > 50:
            lines.append(f"  ... and {len(events) - 50} more")
        return f"Sent ({len(events)}):\n" + "\n".join(lines)


@contextmanager
def run_on_commit(using: str = DEFAULT_DB_ALIAS) -> Iterator[list[Any]]:
    """Run the ``transaction.on_commit()`` callbacks registered inside the block
    when it ends, as a commit would, in a test whose transaction never commits.

    ``TestCase.captureOnCommitCallbacks(execute=True)``, usable outside a
    ``TestCase`` too (pytest-django's ``db`` fixture). Yields the callbacks."""
    from django.test import TestCase

    from .refresh import forget_markers

    with TestCase.captureOnCommitCallbacks(using=using, execute=True) as callbacks:
        forget_markers(using)
        yield callbacks


@contextmanager
def capture_events(
    *,
    run_on_commit: bool = False,
    flush_refreshes: bool = True,
    using: str = DEFAULT_DB_ALIAS,
) -> Iterator[SentEvents]:
    """Collect every event published in this process (any thread) inside the block.

    Events are still published as usual. With ``run_on_commit=True`` the
    block's on-commit callbacks run when it ends (see :func:`run_on_commit`),
    so events that ``send_event``, ``notify`` and model hooks defer to the
    commit are in ``sent`` after the block; assert after it, not inside.

    Refresh hooks (:mod:`django_sse.debounce`) publish when their window ends:
    the block sends what is still pending when it starts (not counted) and,
    unless ``flush_refreshes=False``, when it ends (counted, after the
    on-commit callbacks), so no test waits for a window or sees another's."""
    sent = SentEvents()
    debounce.flush_here()
    with ExitStack() as stack:
        stack.callback(capture.watch(sent._add))
        if run_on_commit:
            stack.enter_context(_run_on_commit(using))
        yield sent
        if flush_refreshes:
            if _in_async_code():
                debounce.flush_here()  # no transaction to wait for here
            else:
                # After the block's own callbacks, which mark the windows; an
                # event it sends inside a test's transaction is then run too.
                transaction.on_commit(debounce.flush, using=using)


def _in_async_code() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def flush_refreshes() -> None:
    """Send the events of every refresh window open in this process now.

    For a test that leaves windows open outside :func:`capture_events` (its
    saves would otherwise be sent by a background thread after the test):
    ``self.addCleanup(flush_refreshes)``."""
    debounce.flush_here()


_run_on_commit = run_on_commit
