"""Stream positions as ``Last-Event-ID`` values.

With history on, the ``id:`` of every event on a stream is the stream's
position on all its stored channels: a key naming the set of channels, then
each channel's last sequence number in base 36, in channel-name order::

    id: 1f3a9c0b-2s-0-k1

Only ``[0-9a-z-]`` is used (CORS-safe: browsers send it back on reconnection
without a preflight), and it stays under 128 bytes for up to
``MAX_STORED_CHANNELS`` channels (checked by ``django_sse.E004``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache

KEY_LENGTH = 8
#: Base-36 digits per sequence number: 36**8 is about 2.8 trillion events.
SEQ_DIGITS = 8
MAX_ID_BYTES = 127
MAX_STORED_CHANNELS = (MAX_ID_BYTES - KEY_LENGTH) // (SEQ_DIGITS + 1)
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


@lru_cache(maxsize=8192)
def to_base36(value: int) -> str:
    # Cached: a stream on several channels names every position in each id,
    # and thousands of resuming streams write the same few thousand numbers.
    # Not more: a busy channel fills any size within minutes and keeps it
    # for good (65,536 entries measured 11.3 MB; 8,192 are about 1.4 MB).
    if value < 0:
        raise ValueError("sequence numbers are never negative")
    out = ""
    while True:
        value, digit = divmod(value, 36)
        out = _DIGITS[digit] + out
        if not value:
            return out


def channel_key(channels: Iterable[str]) -> str:
    """A short hash of the (sorted) set of stored channels of a stream."""
    return _key(tuple(sorted(channels)))


@lru_cache(maxsize=4096)
def _key(channels: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(channels).encode()).hexdigest()[:KEY_LENGTH]


def encode_position(channels: tuple[str, ...], positions: dict[str, int]) -> str:
    """``channels`` must be sorted; the result is the stream's ``id:``."""
    if len(channels) == 1:
        return single_channel_id(channels[0], positions[channels[0]])
    return "-".join([_key(channels), *(to_base36(positions[c]) for c in channels)])


@lru_cache(maxsize=1024)
def single_channel_id(channel: str, seq: int) -> str:
    # Every stream on just this channel writes the same id for an event: make
    # it once per event, not once per stream.
    return f"{_key((channel,))}-{to_base36(seq)}"


def decode_position(value: str, channels: tuple[str, ...]) -> dict[str, int] | None:
    """The positions in ``value`` for ``channels`` (sorted), or ``None`` if it is
    not an id of a stream on exactly these channels."""
    parts = value.split("-")
    if len(parts) != len(channels) + 1 or parts[0] != channel_key(channels):
        return None
    positions: dict[str, int] = {}
    for channel, part in zip(channels, parts[1:], strict=True):
        if not part or len(part) > SEQ_DIGITS + 4 or part.strip(_DIGITS):
            return None
        positions[channel] = int(part, 36)
    return positions
