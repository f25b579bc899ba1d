"""The SSE wire format: one published event becomes bytes exactly once."""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.safestring import SafeData

from .conf import conf
from .names import validate_channel_name

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# C0 controls, DEL and C1 controls: CR, LF and NUL would end or corrupt the
# field, the others are invisible and never a sensible event name.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_EVENT_NAME_LENGTH = 200
# Event names the server sends itself (stream.py); a client must be able to
# trust them, so nobody may publish them. The whole "stream-" prefix is kept
# for server events to come (presence and the like), in any letter case.
# "error" and "open" are EventSource's own: a stored "error" event would reach
# every client's connection-error handler, at every replay.
RESERVED_EVENT_NAMES = frozenset({"error", "open", "snapshot", "presence"})
RESERVED_EVENT_PREFIX = "stream-"
# The inbox's events (and its django-notifications bridge's), which
# DjangoSSE.inbox applies to the badge and list. The wire does not say which
# channel an event came on, so on any other channel of the page they would be
# forged items and counts: they may be sent on user channels ("user:<pk>") only.
USER_CHANNEL_EVENT_NAMES = frozenset({"notification", "inbox", "live-notify"})
# The built-in "user:{pk}" pattern exactly: not an integrator's "user:{pk}:wall".
_USER_CHANNEL = re.compile(r"user:[A-Za-z0-9_.-]+")
#: Presence channels' own events (``presence.join``, ``presence.leave``).
RESERVED_PRESENCE_PREFIX = "presence."

_counter = itertools.count()
# As json_script does: JSON that holds no <, > or & cannot be parsed as markup,
# even by a client that swaps every payload as HTML (htmx's sse-swap does).
_JSON_HTML_ESCAPES = {ord("<"): "\\u003C", ord(">"): "\\u003E", ord("&"): "\\u0026"}


@dataclass(frozen=True, slots=True)
class Event:
    """A published event, already encoded for the wire.

    ``body`` holds the ``event:`` and ``data:`` lines, encoded once. The
    ``id:`` line is written per stream: with history on it is the stream's
    position on all its channels (see ``ids.py``), else the event's own ``id``.
    ``seq`` is the event's number in its channel's history, if it was stored.
    """

    channel: str
    name: str
    id: str
    body: bytes
    seq: int | None = None
    payload: str = ""
    #: The stream that must not get it (``send_event(..., exclude=request)``).
    exclude: str | None = None

    @property
    def wire(self) -> bytes:
        return b"id: " + self.id.encode() + b"\n" + self.body

    def stored(self, seq: int) -> Event:
        return Event(self.channel, self.name, self.id, self.body, seq, self.payload, self.exclude)


def new_event_id() -> str:
    """An opaque, unique, CORS-safe ASCII id (time-ordered within a process)."""
    return f"{time.time_ns():x}-{os.getpid():x}-{next(_counter):x}"


def _where(channel: str, name: object) -> str:
    return f"event {name!r} on channel {channel!r}"


def validate_event_name(channel: str, name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{_where(channel, name)}: event name must be a str")
    if not name:
        raise ValueError(f"{_where(channel, name)}: event name is empty")
    if len(name) > MAX_EVENT_NAME_LENGTH:
        raise ValueError(
            f"{_where(channel, name[:40] + '...')}: event name is longer than "
            f"{MAX_EVENT_NAME_LENGTH} characters"
        )
    if _CONTROL.search(name):
        raise ValueError(
            f"{_where(channel, name)}: event name contains a control character "
            "(CR, LF, NUL and other controls are not allowed)"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{_where(channel, name)}: event name is not valid UTF-8") from exc
    if is_reserved_event_name(name):
        raise ValueError(
            f"{_where(channel, name)}: event name is reserved for the server "
            f"({', '.join(sorted(RESERVED_EVENT_NAMES))} and every name starting with "
            f"{RESERVED_EVENT_PREFIX!r} or {RESERVED_PRESENCE_PREFIX!r}); choose another name"
        )
    return name


def _check_user_channel_event(channel: str, name: str) -> None:
    if name.casefold() in USER_CHANNEL_EVENT_NAMES and not _USER_CHANNEL.fullmatch(channel):
        raise ValueError(
            f"{_where(channel, name)}: event name is the inbox's, sent on a user channel "
            "('user:<pk>') only; choose another name"
        )


def is_reserved_event_name(name: str) -> bool:
    """Whether ``name`` is one the server sends itself (or may in a later version)."""
    folded = name.casefold()
    return folded in RESERVED_EVENT_NAMES or folded.startswith(
        (RESERVED_EVENT_PREFIX, RESERVED_PRESENCE_PREFIX)
    )


def encode_payload(channel: str, name: str, data: Any) -> str:
    """Markup marked safe (a ``SafeString``: ``render_to_string``, ``format_html``,
    ``mark_safe``) is sent verbatim; anything else, a plain ``str`` included, as
    JSON (DjangoJSONEncoder), so a client can tell markup from data and never runs
    a plain string (user input, say) as markup. In JSON, ``<``, ``>`` and ``&``
    are ``\\u`` escapes: the same value for a JSON parser, no markup for an
    HTML parser."""
    if isinstance(data, SafeData) and isinstance(data, str):
        return str(data)
    try:
        text = json.dumps(
            data,
            cls=DjangoJSONEncoder,
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(
            f"{_where(channel, name)}: payload is not JSON serializable: {exc}"
        ) from exc
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates are valid in JSON only as \u escapes.
        text = json.dumps(data, cls=DjangoJSONEncoder, allow_nan=False, separators=(",", ":"))
    return text.translate(_JSON_HTML_ESCAPES)


def encode_body(name: str, payload: str) -> bytes:
    """The ``event:`` line and one ``data:`` line per payload line."""
    lines = [f"event: {name}"]
    lines.extend("data: " + line for line in _LINE_BREAK.split(payload))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def encode(event_id: str, name: str, payload: str) -> bytes:
    """Frame one event: ``id:``, ``event:``, one ``data:`` line per payload line."""
    return b"id: " + event_id.encode() + b"\n" + encode_body(name, payload)


def build_event(channel: str, name: str, data: Any, *, event_id: str | None = None) -> Event:
    """Validate and encode an event; raise ``ValueError``/``TypeError`` on bad input."""
    try:
        validate_channel_name(channel)
    except ValueError as exc:
        raise ValueError(f"{_where(str(channel), name)}: {exc}") from None
    validate_event_name(channel, name)
    _check_user_channel_event(channel, name)
    payload = encode_payload(channel, name, data)
    try:
        size = len(payload.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(f"{_where(channel, name)}: payload is not valid UTF-8 text") from exc
    limit = conf.SSE_MAX_EVENT_BYTES
    if size > limit:
        raise ValueError(
            f"{_where(channel, name)}: payload is {size} bytes, more than "
            f"SSE_MAX_EVENT_BYTES ({limit})"
        )
    return Event(
        channel=channel,
        name=name,
        id=event_id or new_event_id(),
        body=encode_body(name, payload),
        payload=payload,
    )


def comment(text: str) -> bytes:
    """An SSE comment line; clients ignore it, proxies see traffic.

    No blank line follows it: a blank line ends a block, and a block without
    ``data:`` is dispatched by no browser but yielded as an empty message by
    some clients (httpx-sse, which also repeats the last ``id:`` in it). A
    comment line between two events changes neither."""
    return f": {_LINE_BREAK.sub(' ', text)}\n".encode()


def retry(milliseconds: int) -> bytes:
    """A ``retry:`` line. It takes effect when parsed, so it needs no blank
    line (which would make it a data-less block); the next event ends its block."""
    return f"retry: {int(milliseconds)}\n".encode()


def control(name: str, data: Any, last_id: str | None) -> bytes:
    """A server-generated event (overflow, close). It repeats the stream's last
    id, when there is one, so the client's resume position does not move."""
    payload = json.dumps(data, separators=(",", ":"))
    head = f"id: {last_id}\n" if last_id else ""
    return f"{head}event: {name}\ndata: {payload}\n\n".encode()
