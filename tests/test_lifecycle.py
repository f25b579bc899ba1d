"""The lifecycle signals in-process: order, receivers off the loop, the bound."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from django_sse import lifecycle
from django_sse.signals import stream_closed, stream_opened


@pytest.fixture
def received() -> Any:
    got: list[tuple[str, str, dict[str, Any]]] = []

    def opened(**kwargs: Any) -> None:
        time.sleep(0.2)  # slower than the stream: closed must still come second
        got.append(("opened", threading.current_thread().name, kwargs))

    def closed(**kwargs: Any) -> None:
        got.append(("closed", threading.current_thread().name, kwargs))

    stream_opened.connect(opened)
    stream_closed.connect(closed)
    yield got
    stream_opened.disconnect(opened)
    stream_closed.disconnect(closed)


async def test_closed_follows_opened_on_threads_of_their_own(received: Any) -> None:
    track = lifecycle.opened(None, ("a", "b"), "asgi", 2)
    lifecycle.closed(track, None, 0)
    await lifecycle.flush(5.0)
    assert [kind for kind, _, _ in received] == ["opened", "closed"]
    assert all(name.startswith("django_sse-signals-") for _, name, _ in received)
    closed = received[1][2]
    assert closed["reason"] == "client gone" and closed["door"] == "asgi"
    assert closed["channels"] == ("a", "b") and closed["duration"] >= 0


async def test_beyond_the_bound_signals_are_dropped_with_a_warning(
    received: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(lifecycle, "MAX_PENDING", 0)
    monkeypatch.setattr(lifecycle, "_dropped", {"count": 0, "warned": -lifecycle.WARN_EVERY})
    track = lifecycle.opened(None, ("a",), "view", 1)
    lifecycle.closed(track, "revoked", 0)
    await lifecycle.flush(1.0)
    assert received == []
    assert "2 stream lifecycle signals dropped" not in caplog.text  # one warning a minute
    assert "1 stream lifecycle signals dropped" in caplog.text


async def test_without_receivers_nothing_is_sent() -> None:
    assert not stream_opened.has_listeners() and not stream_closed.has_listeners()
    track = lifecycle.opened(None, ("a",), "view", 1)
    assert track.opened is None
    lifecycle.closed(track, None, 0)
    assert not lifecycle._pending
