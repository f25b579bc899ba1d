"""Django signals sent by django_sse, so that apps can audit or call webhooks.

Every signal is sent with ``sender`` set to the class or function that sends
it; receivers take ``**kwargs``. A receiver that raises is logged and never
breaks a stream, the hub or a publisher (``send_robust``). Sending costs
nothing measurable when no receiver is connected (``Signal.has_listeners``
is checked first).
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = [
    "channel_occupied",
    "channel_vacated",
    "presence_joined",
    "presence_left",
    "stream_closed",
    "stream_opened",
]

#: A stream started: ``user``, ``channels`` (tuple), ``door`` ("view" or "asgi").
stream_opened = Signal()
#: A stream ended: ``user``, ``channels``, ``door``, ``reason`` (the close
#: reason, or "client gone"), ``duration`` (seconds).
stream_closed = Signal()
#: The first stream on ``channel``, counted across every process, opened.
channel_occupied = Signal()
#: The last stream on ``channel``, counted across every process, closed.
channel_vacated = Signal()
#: A user's first stream on the presence channel ``channel`` opened:
#: ``channel``, ``member`` (the member data sent to the channel).
presence_joined = Signal()
#: A user's last stream on the presence channel ``channel`` closed (or its
#: process died and its heartbeat expired): ``channel``, ``member``.
presence_left = Signal()
