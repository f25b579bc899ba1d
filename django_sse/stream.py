"""The stream core: authorize, subscribe, live loop, keepalive, cleanup.

It knows nothing of how it is served: a door (the Django view, or an ASGI
handler) parses the request, calls :func:`authorize`, and sends the bytes that
:func:`event_stream` yields.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from .channels import ChannelError, registry
from .conf import conf
from .events import comment, control, retry
from .hub import get_hub
from .names import channel_name_error

KEEPALIVE = comment("keepalive")
#: Events sent by the server itself, not by ``send_event``.
STREAM_CLOSED = "stream-closed"
STREAM_RESET = "stream-reset"


def parse_channels(raw: Iterable[str]) -> tuple[str, ...]:
    """Validate the requested channel names (400 on the first bad one)."""
    names = tuple(dict.fromkeys(raw))
    if not names:
        raise ChannelError(400, "no channel requested: add ?channel=<name> to the URL")
    limit = conf.SSE_MAX_CHANNELS
    if len(names) > limit:
        raise ChannelError(
            400, f"too many channels: {len(names)} requested, at most {limit} (SSE_MAX_CHANNELS)"
        )
    for name in names:
        error = channel_name_error(name)
        if error is not None:
            raise ChannelError(400, error)
    return names


async def authorize(user: Any, raw: Iterable[str]) -> tuple[str, ...]:
    """Return the channels ``user`` may stream, or raise ``ChannelError``.

    Every channel is checked before anything is subscribed."""
    names = parse_channels(raw)
    for name in names:
        if registry.resolve(name) is None:
            raise ChannelError(404, f"channel {name!r} matches no registered channel")
    for name in names:
        await registry.authorize(user, name)
    return names


async def event_stream(
    channels: tuple[str, ...], *, last_event_id: str | None = None
) -> AsyncIterator[bytes]:
    """Yield the wire bytes of a stream on ``channels`` until the client goes.

    The first chunk (``retry:`` and a comment) is yielded as soon as the
    subscription is in place, so the response head reaches the client at once.
    """
    hub = get_hub()
    sub = await hub.subscribe(channels, conf.SSE_QUEUE_SIZE, conf.SSE_KEEPALIVE)
    last_sent: str | None = None
    try:
        yield retry(conf.SSE_RETRY_MS) + comment("connected")
        if last_event_id:
            # No history to replay from: tell the client to reload its state.
            yield control(STREAM_RESET, {"reason": "history unavailable"}, None)
        while True:
            await sub.wait()
            # Checked before draining: whatever was queued when the stream was
            # closed is still sent, ahead of the closing event.
            reason = sub.close_reason
            events = sub.drain()
            if events:
                last_sent = events[-1].id
                sub.wrote()
                yield b"".join([event.wire for event in events])
            elif sub.keepalive_due:
                sub.wrote()
                yield KEEPALIVE
            if reason is not None:
                yield control(STREAM_CLOSED, {"reason": reason, "reconnect": True}, last_sent)
                return
    finally:
        hub.unsubscribe(sub)
