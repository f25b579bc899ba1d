"""The events and signals of presence: snapshots, joins and leaves on the
channel, and the Django signals that apps receive."""

from __future__ import annotations

import json
import logging
from typing import Any

from .events import Event, encode_body, encode_payload, new_event_id
from .layer import _RateLimitedWarning
from .presence_api import JOIN, LEAVE, SNAPSHOT
from .presence_store import Change, State

logger = logging.getLogger("django_sse")

store_failed = _RateLimitedWarning(
    logging.WARNING,
    "The presence store failed (%s); streams go on, presence catches up at the next heartbeat",
)


async def publish(layer: Any, channel: str, change: Change) -> None:
    """Send a join or leave to every stream on ``channel``, in every process."""
    from .hub import deliver_locally, is_in_memory, to_message
    from .layer import group_send
    from .names import group_name

    name = JOIN if change.kind == "join" else LEAVE
    data = {
        "channel": channel,
        "key": change.key,
        "member": json.loads(change.member),
        "version": change.version,
    }
    body = encode_body(name, encode_payload(channel, name, data))
    event = Event(channel, name, new_event_id(), body)
    if layer is None or is_in_memory(layer):
        deliver_locally(event)
        return
    try:
        await group_send(layer, group_name(channel), to_message(event))
    except Exception as exc:
        store_failed(f"publishing {name}: {type(exc).__name__}")


def snapshot_body(channel: str, state: State) -> bytes:
    """The ``presence`` event of ``state``, framed without its ``id:`` line."""
    members = [{"key": key, "member": json.loads(data)} for key, data in state.members.items()]
    data = {
        "channel": channel,
        "members": members,
        "users": len(members),
        "streams": state.streams,
        "anonymous": state.anonymous,
        "version": state.version,
    }
    return encode_body(SNAPSHOT, encode_payload(channel, SNAPSHOT, data))


async def send_signal(signal: Any, **kwargs: Any) -> None:
    """Send ``signal`` if anyone listens; a receiver that raises is logged."""
    if not signal.has_listeners():
        return
    for receiver, result in await signal.asend_robust(sender=Change, **kwargs):
        if isinstance(result, Exception):
            logger.error("A receiver of a django_sse signal raised (%r)", receiver, exc_info=result)
