"""The hub's messages on the channel layer, and checking those that arrive.

Other applications may share the layer: whatever arrives is checked before it
is used, so a foreign or malformed message is refused, never half-applied.
"""

from __future__ import annotations

from typing import Any

from .events import Event

MESSAGE_TYPE = "sse.event"
#: Revocations reach every process's hub through the control group.
REVOKE_TYPE = "sse.revoke"


def to_message(event: Event) -> dict[str, Any]:
    return {
        "type": MESSAGE_TYPE,
        "channel": event.channel,
        "name": event.name,
        "id": event.id,
        "seq": event.seq,
        "body": event.body,
        "exclude": event.exclude,
    }


def from_message(message: dict[str, Any]) -> Event:
    """The event in a layer message; ``TypeError`` if it is not one of ours."""
    channel, name, event_id = message["channel"], message["name"], message["id"]
    body, seq, exclude = message["body"], message.get("seq"), message.get("exclude")
    if not (isinstance(channel, str) and isinstance(name, str) and isinstance(event_id, str)):
        raise TypeError("channel, name and id must be str")
    if not isinstance(body, bytes):
        raise TypeError("body must be bytes")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 1):
        raise TypeError("seq must be a positive int")
    if exclude is not None and not isinstance(exclude, str):
        raise TypeError("exclude must be a str")
    return Event(channel=channel, name=name, id=event_id, body=body, seq=seq, exclude=exclude)


def revocation(message: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """``(owner, channel, session)`` of a revoke message; ``TypeError`` if malformed."""
    owner = message["owner"]
    channel, session = message.get("channel"), message.get("session")
    if not isinstance(owner, (str, int)) or isinstance(owner, bool):
        raise TypeError("owner must be a str")
    if not all(v is None or isinstance(v, str) for v in (channel, session)):
        raise TypeError("channel and session must be str")
    return str(owner), channel, session
