"""The floor: a do-nothing asyncio SSE server,
``python -m benchmarks.harness.floor PORT [--loop asyncio|uvloop]``.

No framework, no queue, no history: it parses the request line, and each
published event is framed once and written to every socket on its channel
(chunked, as uvicorn frames ours). It serves the paths of the test project
(``GET /sse/?channel=``, ``POST /test/publish/``, ``GET /test/stats/``) so every
scenario runs against it unchanged. What a real server costs above this is
the price of its features. ``--loop uvloop`` runs it on uvloop, the floor
of the servers that run on uvloop (``uvicorn-httptools``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from urllib.parse import parse_qs, urlsplit

HEAD_LIMIT = 65536
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
#: The first chunk, as django_sse sends it: a reconnection delay and a comment.
HELLO = b"retry: 1000\n: connected\n\n"

subscribers: dict[str, set[asyncio.StreamWriter]] = {}
streams = 0


def chunk(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(body), body)


def answer(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    writer.write(
        b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, len(body), body)
    )


def publish(body: dict[str, object]) -> None:
    channel = str(body["channel"])
    name = str(body.get("event", "message"))
    for i in range(int(str(body.get("count", 1)))):
        data = body.get("data", {"n": i})
        frame = chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        for writer in subscribers.get(channel, ()):
            writer.write(frame)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global streams
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    lines = head.decode("latin-1").split("\r\n")
    method, target = lines[0].split(" ")[:2]
    url = urlsplit(target)
    if method == "GET" and url.path == "/sse/":
        channels = parse_qs(url.query).get("channel", [])
        writer.write(STREAM_HEAD + chunk(HELLO))
        streams += 1
        for c in channels:
            subscribers.setdefault(c, set()).add(writer)
        try:
            await reader.read()  # until the client goes
        except ConnectionError:
            pass
        finally:
            streams -= 1
            for c in channels:
                subscribers[c].discard(writer)
                if not subscribers[c]:
                    del subscribers[c]
            writer.close()
        return
    if method == "POST" and url.path == "/test/publish/":
        length = next(
            (int(x.split(":", 1)[1]) for x in lines if x.lower().startswith("content-length:")),
            0,
        )
        publish(json.loads(await reader.readexactly(length)))
        answer(writer, 200, b'{"ok": true}')
    elif method == "GET" and url.path == "/test/stats/":
        answer(writer, 200, json.dumps({"streams": streams, "channels": len(subscribers)}).encode())
    else:
        answer(writer, 404, b"{}")
    await writer.drain()
    writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096, limit=HEAD_LIMIT)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args.port))
    else:
        asyncio.run(main(args.port))
