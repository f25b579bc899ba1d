"""The load client of the fault suite, in a process of its own.

``python -m tests.faults.loadclient CONFIG`` where CONFIG is JSON::

    {"port": 8000, "clients": [["fault:a"], ["fault:a", "fault:b"], ...],
     "stalled": [0], "headers": {"Cookie": "..."}, "authenticated": [3, 4]}

It opens every client (a few at a time, bounded), prints ``{"ready": N}``, then
obeys one JSON command per line on stdin, answering each with one JSON line:

- ``{"cmd": "status"}``: how many streams are open and reconnects so far;
- ``{"cmd": "hang_up"}`` / ``{"cmd": "come_back", "spread": s}``: every client
  closes its connection and stays away / reconnects with its last id, each at
  a random moment within ``spread`` seconds;
- ``{"cmd": "unstall"}``: stalled clients read again;
- ``{"cmd": "finish", "heads": {channel: seq}, "timeout": s}``: wait until
  every client has reached the heads (or a reset past them), then print the
  records of all clients and exit.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

from tests.faults.client import SSEClient, open_all

#: Seconds after catching up in which a late duplicate would still be counted.
SETTLE = 0.5


async def main(config: dict[str, Any]) -> None:
    stalled = set(config.get("stalled", []))
    authenticated = set(config.get("authenticated", []))
    clients = [
        SSEClient(
            config["port"],
            channels,
            headers=config.get("headers", {}) if i in authenticated else None,
            rcvbuf=4096 if i in stalled else None,
        )
        for i, channels in enumerate(config["clients"])
    ]
    for i in stalled:
        # It sends its request and reads the head, then nothing until unstalled.
        clients[i].reading.clear()
        clients[i].open.set()
    started = time.monotonic()
    tasks, opened = await open_all(clients, config.get("open_timeout", 60.0))
    log(f"{opened} of {len(clients)} open")
    say({"ready": opened, "seconds": round(time.monotonic() - started, 2)})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        cmd = command["cmd"]
        if cmd == "status":
            say(status(clients))
        elif cmd == "hang_up":
            for c in clients:
                c.hang_up()
            say(status(clients))
        elif cmd == "come_back":
            # Within ``spread`` seconds, each at a random moment.
            spread = float(command.get("spread", 0))
            for c in clients:
                loop.call_later(random.uniform(0, spread), c.connected.set)
            say(status(clients))
        elif cmd == "unstall":
            for i in stalled:
                clients[i].reading.set()
            say(status(clients))
        elif cmd == "finish":
            heads = command["heads"]
            deadline = time.monotonic() + command.get("timeout", 60.0)
            # A condition over every client, each changing on its own: polled.
            while time.monotonic() < deadline and not all(  # noqa: ASYNC110
                c.caught_up(heads) or c.stopped for c in clients
            ):
                await asyncio.sleep(0.05)
            caught = sum(c.caught_up(heads) for c in clients)
            log(f"{caught} of {len(clients)} caught up")
            await asyncio.sleep(SETTLE)
            for c in clients:
                c.stop()
            for task in tasks:
                task.cancel()
            # Bounded: Python 3.11's wait_for can swallow a cancellation; the
            # clients' stop flag ends their loops anyway.
            await asyncio.wait(tasks, timeout=10)
            log("stopped")
            say({"caught_up": caught, "records": [c.record.as_json() for c in clients]})
            return


def status(clients: list[SSEClient]) -> dict[str, Any]:
    return {
        "streaming": sum(c.streaming for c in clients),
        "reconnects": sum(c.record.reconnects for c in clients),
        "connects": sum(c.record.connects for c in clients),
    }


def log(text: str) -> None:
    print(f"loadclient {time.strftime('%H:%M:%S')}: {text}", file=sys.stderr, flush=True)


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
