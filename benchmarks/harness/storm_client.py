"""The resume storm's load client, in a process of its own (pinned to the
second core): ``python -m benchmarks.harness.storm_client CONFIG_FILE``.

CONFIG_FILE holds JSON: ``{"port": P, "clients": [["storm:a"], ...], "backoff":
"at-once" | "jittered", "open_timeout": s, "cpu": 1}``. Each client reconnects
after a drop, sending ``Last-Event-ID`` (the last id it parsed, as
EventSource does), and counts the events of every channel by the ``n`` in
their payload, so the count is the same for every library whatever its ids:

* ``at-once``: every client tries again 0.1 s after a drop or a refusal, so
  all of them arrive within 0.1 s of the server listening again;
* ``jittered``: the JS helper's backoff: ``ceiling = min(30, 2 ** attempts)``
  seconds, a delay drawn in ``[ceiling / 2, ceiling]``, attempts counted from
  the drop and reset once a stream has held for 10 s.

Prints ``{"ready": N}`` when every stream is open, then answers one JSON
command per line: ``status``, and ``finish`` with ``heads`` (events per
channel) and ``timeout``, which waits until every client has every event and
answers with the totals (lost, duplicated, out of order, closes, when the last
client caught up).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from tests.faults.client import SSEClient, open_all

#: Seconds after the last client caught up in which a late duplicate still counts.
SETTLE = 1.0
AT_ONCE_DELAY = 0.1
RETRY_BASE = 1.0
RETRY_MAX = 30.0
HOLD_RESET = 10.0


class StormClient(SSEClient):
    def __init__(self, port: int, channels: list[str], backoff: str) -> None:
        super().__init__(port, channels)
        self.backoff = backoff
        self.attempts = 0
        self.seen: dict[str, set[int]] = {c: set() for c in self.channels}
        self.top: dict[str, int] = dict.fromkeys(self.channels, -1)
        self.duplicated = 0
        self.out_of_order = 0
        #: When the last event not seen before arrived (wall clock).
        self.last_new = 0.0
        self.opened_at = 0.0

    def _event(self, name: str, data: str, event_id: str) -> None:
        if name == "stream-closed":
            reason = str(_json(data).get("reason"))
            self.record.closes[reason] = self.record.closes.get(reason, 0) + 1
            return
        if name != "storm":
            return  # stream-open, keep-alive, stream-reset, ...
        payload = _json(data)
        channel, n = payload.get("channel"), payload.get("n")
        if channel not in self.seen or not isinstance(n, int):
            return
        if n in self.seen[channel]:
            self.duplicated += 1
            return
        if n < self.top[channel]:
            self.out_of_order += 1
        self.top[channel] = max(self.top[channel], n)
        self.seen[channel].add(n)
        self.last_new = time.time()

    def caught_up(self, heads: dict[str, int]) -> bool:
        return all(len(self.seen[c]) >= heads.get(c, 0) for c in self.channels)

    def delay(self) -> float:
        if self.backoff == "at-once":
            return AT_ONCE_DELAY
        if self.opened_at and time.monotonic() - self.opened_at > HOLD_RESET:
            self.attempts = 0
        ceiling = min(RETRY_MAX, RETRY_BASE * float(2**self.attempts))
        self.attempts += 1
        return ceiling / 2 + random.random() * ceiling / 2

    async def run(self) -> None:
        first = True
        while not self.stopped:
            if not first:
                self.record.reconnects += 1
            first = False
            try:
                await self._connect_once()
            except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError):
                pass
            finally:
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
            if self.stopped:
                return
            await asyncio.sleep(self.delay())

    async def _read_body(self, reader: asyncio.StreamReader, chunked: bool) -> None:
        self.opened_at = time.monotonic()
        await super()._read_body(reader, chunked)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def totals(clients: list[StormClient], heads: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "clients": len(clients),
        "caught_up": sum(c.caught_up(heads) for c in clients),
        "expected": sum(heads.get(ch, 0) for c in clients for ch in c.channels),
        "delivered": sum(len(s) for c in clients for s in c.seen.values()),
        "lost": sum(
            max(heads.get(ch, 0) - len(c.seen[ch]), 0) for c in clients for ch in c.channels
        ),
        "duplicated": sum(c.duplicated for c in clients),
        "out_of_order": sum(c.out_of_order for c in clients),
        "reconnects": sum(c.record.reconnects for c in clients),
        "refused": sum(c.record.refused for c in clients),
        # Once the heads are final, a client caught up when its last new event came.
        "last_caught_at": max((c.last_new for c in clients if c.caught_up(heads)), default=0.0),
        "closes": {},
        "statuses": {},
    }
    for c in clients:
        for key in ("closes", "statuses"):
            for k, v in getattr(c.record, key).items():
                out[key][k] = out[key].get(k, 0) + v
    return out


async def main(config: dict[str, Any]) -> None:
    clients = [StormClient(config["port"], chs, config["backoff"]) for chs in config["clients"]]
    started = time.monotonic()
    tasks, opened = await open_all(list[SSEClient](clients), config.get("open_timeout", 120.0))
    say({"ready": opened, "seconds": round(time.monotonic() - started, 2)})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        if command["cmd"] == "status":
            failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
            say(
                {
                    "streaming": sum(c.streaming for c in clients),
                    # Clients with an event on every channel: they have a position.
                    "positioned": sum(all(c.seen.values()) for c in clients),
                    "connects": sum(c.record.connects for c in clients),
                    "refused": sum(c.record.refused for c in clients),
                    "crashed": len(failed),
                    "first_crash": repr(failed[0].exception()) if failed else None,
                }
            )
        elif command["cmd"] == "finish":
            heads = command["heads"]
            deadline = time.monotonic() + float(command.get("timeout", 60.0))
            # A condition over every client, each changing on its own: polled.
            while time.monotonic() < deadline and not all(  # noqa: ASYNC110
                c.caught_up(heads) for c in clients
            ):
                await asyncio.sleep(0.05)
            await asyncio.sleep(SETTLE)
            for c in clients:
                c.stop()
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=10)
            say(totals(clients, heads))
            return


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
