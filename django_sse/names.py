"""Channel names: validation and the layer group name each one maps to."""

from __future__ import annotations

import hashlib
import re

CHANNEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
MAX_NAME_LENGTH = 100
GROUP_PREFIX = "sse."
# Channels' layers reject group names of 100 characters or more.
_MAX_GROUP_NAME = 99


def channel_name_error(name: object) -> str | None:
    """Return why ``name`` is not a valid channel name, or ``None`` if it is."""
    if not isinstance(name, str):
        return f"channel name must be a string, got {type(name).__name__}"
    if not name:
        return "channel name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"channel name is {len(name)} characters long, the limit is {MAX_NAME_LENGTH}"
    if not CHANNEL_NAME_RE.fullmatch(name):
        return (
            f"channel name {name[:100]!r} is malformed: use letters, digits and _ . : -, "
            "starting with a letter or digit"
        )
    return None


def validate_channel_name(name: object) -> str:
    """Return ``name`` if valid, else raise ``ValueError`` saying why."""
    error = channel_name_error(name)
    if error is not None:
        raise ValueError(error)
    assert isinstance(name, str)
    return name


def group_name(channel: str) -> str:
    """Map a channel name to a group name every Channels layer accepts.

    Layer group names allow only ``[A-Za-z0-9_.-]`` and fewer than 100
    characters, so ``_`` is doubled and ``:`` becomes ``_c``: an injective,
    readable mapping. Names that grow too long are hashed instead; the hashed
    form starts with ``_``, which an escaped name never does, so the two
    cannot collide.
    """
    escaped = channel.replace("_", "__").replace(":", "_c")
    name = GROUP_PREFIX + escaped
    if len(name) <= _MAX_GROUP_NAME:
        return name
    return GROUP_PREFIX + "_" + hashlib.sha256(channel.encode()).hexdigest()
