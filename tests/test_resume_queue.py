"""A resuming stream's queue: events published while it replays, and a stream
closed before it started."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from django.test import override_settings


class MemStore:
    """An in-memory store whose reads are slow (a resume storm on 4 store threads)."""

    READ_DELAY = 0.5
    rows: list[tuple[str, int, str, str]] = []
    #: Set when a read starts: the test publishes while it runs.
    reading = threading.Event()

    def append(self, channel: str, name: str, payload: str) -> int:
        seq = self.heads([channel])[channel] + 1
        self.rows.append((channel, seq, name, payload))
        return seq

    def read(self, positions: dict[str, int], limit: int = 1000) -> list[Any]:
        import time

        from django_sse.store import Record

        type(self).reading.set()
        time.sleep(self.READ_DELAY)
        found = [r for r in self.rows if r[0] in positions and r[1] > positions[r[0]]]
        return [Record(i, *r) for i, r in enumerate(found[:limit])]

    def heads(self, channels: Any) -> dict[str, int]:
        return {c: max((r[1] for r in self.rows if r[0] == c), default=0) for c in channels}

    def oldest(self, channels: Any) -> dict[str, int]:
        out = {}
        for c in channels:
            seqs = [r[1] for r in self.rows if r[0] == c]
            if seqs:
                out[c] = min(seqs)
        return out

    def prune(self) -> int:
        return 0


async def _resume_with_burst(during_replay: bool) -> bytes:
    from django_sse import store as history
    from django_sse.events import build_event
    from django_sse.hub import get_hub
    from django_sse.ids import encode_position
    from django_sse.stream import event_stream

    path = f"{__name__}.MemStore"
    MemStore.rows = []
    MemStore.reading = threading.Event()
    with override_settings(SSE_STORE=path, SSE_QUEUE_SIZE=5, SSE_HISTORY_POLL=60):
        history._stores.pop(path, None)
        store = history.get_store()
        for i in range(1, 6):
            store.append("public", "n", str(i))  # type: ignore[union-attr]
        hub = get_hub()
        gen = event_stream(("public",), last_event_id=encode_position(("public",), {"public": 1}))
        body = b""
        try:
            body += await gen.__anext__()  # subscribed; first bytes written
            nxt = asyncio.ensure_future(gen.__anext__())
            if during_replay:
                # Publish while the replay read is in progress.
                assert await asyncio.to_thread(MemStore.reading.wait, 5)
            for i in range(6, 16):  # published meanwhile: stored, then dispatched
                seq = store.append("public", "n", str(i))  # type: ignore[union-attr]
                hub.dispatch(build_event("public", "n", i).stored(seq))
            body += await asyncio.wait_for(nxt, 5)
            while b'"reason"' not in body:
                try:
                    body += await asyncio.wait_for(gen.__anext__(), 1.5)
                except TimeoutError:
                    break  # nothing more: the stream is live and idle
        finally:
            await gen.aclose()
            await hub.stop(grace=0.1)
            history._stores.pop(path, None)
    return body


async def test_a_stream_closed_before_its_start_writes_no_event_without_its_position() -> None:
    """A resuming stream closed (here: overflow; likewise ``shutdown`` from Hub.stop)
    between subscribing and ``_start`` never gets a cursor: ``_live`` then writes the
    queued events of its *stored* channel with their raw event ids, after a silent
    hole (#2-#5 never sent), and ``stream-closed`` carries that raw id, which the
    next connection calls an unknown id (a needless stream-reset)."""
    body = await _resume_with_burst(during_replay=False)
    assert b"data: 6\n" not in body or b"data: 2\n" in body, body.decode()


async def test_a_resuming_stream_is_not_closed_for_live_events_that_are_in_the_store() -> None:
    """While a resuming stream waits for its replay read, live events of its stored
    channels fill its queue and it is closed with ``overflow``, although every one
    of them is in the store it is reading: in a resume storm (slow store reads) on a
    busy channel resuming clients are closed, reconnect and replay again."""
    body = await _resume_with_burst(during_replay=True)
    assert b"overflow" not in body, body.decode()
    assert body.count(b"event: n\n") == 14, body.decode()
