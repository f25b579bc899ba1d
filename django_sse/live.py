"""What every server process is streaming now, for the admin's Live page.

Each hub reports on itself: its streams, its channels and the busiest of them.
With a cross-process layer (Redis) the page asks every hub at once through the
layer's control group, the group revocations use, and waits
:data:`WAIT` seconds for the answers on a reply channel of its own; a process
that does not answer in time (stopped, stalled, or busy) is missing from the
page, which says how many answered. Nothing is stored, nothing is agreed on:
each figure is one process's own count, at the moment it answered. With the
in-memory layer there is one process, and the page reads its hubs directly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from channels.layers import get_channel_layer

from .membership import CONTROL_GROUP, bounded

if TYPE_CHECKING:
    from .hub import Hub

logger = logging.getLogger("django_sse")

#: The control message asking every hub for its report, and the answer.
STATS_TYPE = "sse.stats"
REPLY_TYPE = "sse.stats.reply"
#: Reply channels start so: a hub answers no other channel.
REPLY_PREFIX = "sse.live."
#: Seconds the page waits for the processes' answers.
WAIT = 0.5
#: Channels each process reports (its busiest): a report stays small
#: however many channels a process serves.
TOP_CHANNELS = 50
#: Answers kept at most (the rest are read and dropped until the wait ends).
MAX_PROCESSES = 200


@dataclass
class Report:
    """One hub's streams and channels, as it counted them."""

    process: str
    streams: int
    channels: int
    #: The busiest channels, ``(name, streams)``, most streams first.
    top: list[tuple[str, int]] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)

    def as_message(self) -> dict[str, Any]:
        return {
            "process": self.process,
            "streams": self.streams,
            "channels": self.channels,
            "top": [list(pair) for pair in self.top],
            "states": self.states,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Report:
        """A report read from the layer (``TypeError``/``ValueError`` if malformed)."""
        top = [(str(name), int(count)) for name, count in message["top"][:TOP_CHANNELS]]
        states = {str(k): int(v) for k, v in dict(message.get("states", {})).items()}
        return cls(
            str(message["process"])[:200],
            int(message["streams"]),
            int(message["channels"]),
            top,
            states,
        )


def process_name(hub: Hub) -> str:
    """``host:pid``, and the hub's id when a process runs several event loops."""
    from .hub import local_hubs

    name = f"{socket.gethostname()}:{os.getpid()}"
    if len(local_hubs()) > 1:
        name += f"/{id(hub):x}"
    return name


def report(hub: Hub) -> Report:
    """The hub's report: one pass over its groups and streams."""
    groups = hub.membership.groups
    counts = [(name, len(g.members)) for name, g in groups.items() if g.members]
    counts.sort(key=lambda pair: (-pair[1], pair[0]))
    states: dict[str, int] = {}
    for sub in hub.subscriptions:
        states[sub.state] = states.get(sub.state, 0) + 1
    return Report(
        process_name(hub), len(hub.subscriptions), len(counts), counts[:TOP_CHANNELS], states
    )


def _made_for_a_page(hub: Hub, reply: str) -> bool:
    """Whether ``reply`` is what ``new_channel(REPLY_PREFIX)`` makes: the pub/sub
    layer puts its own prefix first, the others do not."""
    prefix = getattr(hub.layer, "prefix", "")
    if not isinstance(prefix, str):
        prefix = ""
    return reply.startswith((REPLY_PREFIX, prefix + REPLY_PREFIX))


def answer(hub: Hub, message: dict[str, Any]) -> None:
    """Answer a ``sse.stats`` control message (from the hub's receive loop)."""
    reply = message.get("reply")
    if not isinstance(reply, str) or len(reply) > 200 or not _made_for_a_page(hub, reply):
        raise TypeError("a stats request without a reply channel of ours")
    body = {"type": REPLY_TYPE, "request": str(message.get("request", ""))[:64]}
    body.update(report(hub).as_message())

    async def send() -> None:
        try:
            await bounded(hub.layer.send(reply, body))
        except Exception as exc:
            logger.debug("Answering a Live page request failed: %s", exc)

    hub.tasks.spawn(send())


async def _on_its_loop(hub: Hub, wait: float) -> Report | None:
    """``report(hub)`` computed on the hub's own loop (its streams change there)."""
    if hub.loop is asyncio.get_running_loop():
        return report(hub)

    async def made() -> Report:
        return report(hub)

    try:
        future = asyncio.run_coroutine_threadsafe(made(), hub.loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), wait)
    except (RuntimeError, TimeoutError):
        return None  # its loop closed, or is too busy to answer in time


async def gather(wait: float = WAIT) -> tuple[list[Report], str | None]:
    """Every process's report, and why some may be missing (or ``None``)."""
    from .hub import is_in_memory, local_hubs

    layer = get_channel_layer()
    if layer is None or is_in_memory(layer):
        local = await asyncio.gather(*(_on_its_loop(h, wait) for h in local_hubs()))
        return [r for r in local if r is not None], None
    try:
        reply = await bounded(layer.new_channel(REPLY_PREFIX))
    except Exception as exc:
        return [], f"the channel layer is unavailable ({type(exc).__name__})"
    request = uuid.uuid4().hex
    loop = asyncio.get_running_loop()
    problem = None
    deadline = loop.time() + wait
    try:
        await bounded(
            layer.group_send(
                CONTROL_GROUP, {"type": STATS_TYPE, "reply": reply, "request": request}
            )
        )
    except Exception as exc:
        problem = f"the channel layer is unavailable ({type(exc).__name__})"
        deadline = loop.time()  # still one receive: cancelling it ends the subscription
    found: list[Report] = []
    # Until the deadline, always: the receive it cancels ends the reply
    # channel's subscription (pub/sub layer), which no other call does.
    while True:
        try:
            message = await asyncio.wait_for(
                layer.receive(reply), max(deadline - loop.time(), 0.001)
            )
        except TimeoutError:
            break
        except Exception as exc:
            problem = f"the channel layer failed ({type(exc).__name__})"
            break
        if len(found) >= MAX_PROCESSES:
            continue  # read, not kept: the page's work stays bounded
        if not isinstance(message, dict) or message.get("request") != request:
            continue
        try:
            found.append(Report.from_message(message))
        except (KeyError, TypeError, ValueError):
            logger.warning("Ignoring a malformed Live page report")
    found.sort(key=lambda r: r.process)
    return found, problem


def merged_top(reports: list[Report], limit: int = TOP_CHANNELS) -> list[tuple[str, int]]:
    """The busiest channels over every process (of those each one reported)."""
    totals: dict[str, int] = {}
    for r in reports:
        for name, count in r.top:
            totals[name] = totals.get(name, 0) + count
    return sorted(totals.items(), key=lambda pair: (-pair[1], pair[0]))[:limit]
