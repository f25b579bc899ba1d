"""The ASGI floor: a do-nothing ASGI application, run by the same server as ours.

``benchmarks.harness.asgi_floor:application`` serves the paths of the test
project (``GET /sse/?channel=``, ``POST /test/publish/``, ``GET /test/stats/``)
with no framework: a stream sends its first chunk and waits for the client to
go; a publish frames each event once and awaits every stream's ``send`` in
turn. What the floor server (:mod:`benchmarks.harness.floor`) costs less than
this is the ASGI server's own price (uvicorn's protocol objects and its
``send``); what django_sse costs above this is its own.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

HELLO = b"retry: 1000\n: connected\n\n"
subscribers: dict[str, list[Any]] = {}
streams = 0


async def _answer(send: Any, body: bytes, status: int = 200) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _body(receive: Any) -> bytes:
    out = b""
    while True:
        message = await receive()
        out += message.get("body", b"")
        if not message.get("more_body"):
            return out


async def application(scope: Any, receive: Any, send: Any) -> None:
    global streams
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if method == "GET" and path == "/sse/":
        channels = parse_qs(scope["query_string"].decode()).get("channel", [])
        head = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": HELLO, "more_body": True})
        streams += 1
        for c in channels:
            subscribers.setdefault(c, []).append(send)
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        finally:
            streams -= 1
            for c in channels:
                subscribers[c].remove(send)
        return
    if method == "POST" and path == "/test/publish/":
        body = json.loads(await _body(receive))
        name = str(body.get("event", "message"))
        for i in range(int(body.get("count", 1))):
            data = body.get("data", {"n": i})
            frame = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            for stream in list(subscribers.get(str(body["channel"]), ())):
                await stream({"type": "http.response.body", "body": frame, "more_body": True})
        await _answer(send, b'{"ok": true}')
    elif method == "GET" and path == "/test/stats/":
        await _answer(send, json.dumps({"streams": streams}).encode())
    else:
        await _answer(send, b"{}", 404)
