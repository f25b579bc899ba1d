"""``tests.asgi`` with a pyinstrument profiler that a client switches on and off.

``POST /bench/profile/start`` starts sampling the event loop's thread;
``POST /bench/profile/stop`` stops it and answers with the text report. Used
by ``benchmarks/profile_fanout.py`` only.
"""

from __future__ import annotations

from typing import Any

from tests.asgi import application as inner

_profiler: Any = None


async def _answer(send: Any, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def application(scope: Any, receive: Any, send: Any) -> None:
    global _profiler
    path = scope.get("path", "") if scope["type"] == "http" else ""
    if path == "/bench/profile/start":
        from pyinstrument import Profiler

        # Sampling this thread, the event loop's, every 0.5 ms.
        _profiler = Profiler(interval=0.0005, async_mode="disabled")
        _profiler.start()
        await _answer(send, b"started")
    elif path == "/bench/profile/stop" and _profiler is not None:
        _profiler.stop()
        text = _profiler.output_text(unicode=False, color=False, show_all=False)
        _profiler = None
        await _answer(send, text.encode())
    else:
        await inner(scope, receive, send)
