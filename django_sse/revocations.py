"""Revocations a hub has seen recently, for the streams still starting.

A stream authenticated just before a logout but subscribed just after it would
otherwise miss the revocation and stay open.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from .sessions import digest
from .subscription import Subscription

#: Revocations each hub remembers; a stream starts well within a second, so
#: this covers bursts of logouts.
REVOCATIONS_KEPT = 1000


class Revocation(NamedTuple):
    at: float  # time.monotonic()
    owner: str
    channel: str | None
    #: ``sessions.digest()`` of the session key (what a revoke message carries),
    #: or the key itself from a caller in this process.
    session: str | None

    def revokes(self, sub: Subscription) -> bool:
        if sub.owner != self.owner:
            return False
        if self.session is not None:
            key = sub.session_key
            if key is None or self.session not in (key, digest(key)):
                return False
        return self.channel is None or self.channel in sub.channels


class Revocations:
    """The recent revocations of one hub."""

    def __init__(self, kept: int = REVOCATIONS_KEPT) -> None:
        self._recent: deque[Revocation] = deque(maxlen=kept)

    def apply(
        self,
        subscriptions: Iterable[Subscription],
        owner: str,
        channel: str | None = None,
        session: str | None = None,
    ) -> int:
        """Remember the revocation and close the open streams it covers."""
        revocation = Revocation(time.monotonic(), owner, channel, session)
        self._recent.append(revocation)
        closed = 0
        for sub in subscriptions:
            if not sub.closed and revocation.revokes(sub):
                sub.close("revoked")
                closed += 1
        return closed

    def since(self, sub: Subscription, since: float) -> bool:
        """Whether a revocation of ``sub`` arrived after ``since`` (``time.monotonic()``)."""
        for revocation in reversed(self._recent):
            if revocation.at < since:
                return False
            if revocation.revokes(sub):
                return True
        return False
