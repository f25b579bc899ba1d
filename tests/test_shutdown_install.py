"""Chaining the server's signal handlers (shutdown.install), in process."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from django_sse import shutdown


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """The process's SIGTERM/SIGINT handlers put back afterwards; ``closing``
    set, so that a chained handler calls the server's at once."""
    saved = {sig: signal.getsignal(sig) for sig in shutdown.SIGNALS}
    closing = threading.Event()
    closing.set()
    monkeypatch.setattr(shutdown, "closing", closing)
    monkeypatch.setattr(shutdown, "_seen", None)
    calls: list[tuple[str, int]] = []
    try:
        yield calls
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _server(name: str, calls: list[tuple[str, int]]) -> Any:
    def handle_exit(signum: int, frame: Any) -> None:
        calls.append((name, signum))

    return handle_exit


def _serve(handler: Any) -> None:
    """What uvicorn's ``capture_signals`` does when a server starts."""
    for sig in shutdown.SIGNALS:
        signal.signal(sig, handler)


def test_a_server_that_sets_its_handlers_after_ours_is_chained_again(
    handlers: list[tuple[str, int]],
) -> None:
    loop = asyncio.new_event_loop()
    try:
        _serve(_server("first", handlers))
        shutdown.install(loop)
        ours = signal.getsignal(signal.SIGTERM)
        assert getattr(ours, "django_sse", False)
        shutdown.install(loop)  # nothing changed: not wrapped twice
        assert signal.getsignal(signal.SIGTERM) is ours
        # The first server stops (restoring the defaults), a second one starts.
        for sig in shutdown.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        _serve(_server("second", handlers))
        shutdown.install(loop)
        again = signal.getsignal(signal.SIGTERM)
        assert getattr(again, "django_sse", False) and again is not ours
        again(signal.SIGTERM, None)
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        assert handlers == [("second", signal.SIGTERM), ("second", signal.SIGINT)]
    finally:
        loop.close()


def test_without_a_server_handler_nothing_is_chained_until_one_is_set(
    handlers: list[tuple[str, int]],
) -> None:
    loop = asyncio.new_event_loop()
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        shutdown.install(loop)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGTERM, _server("late", handlers))
        shutdown.install(loop)
        assert getattr(signal.getsignal(signal.SIGTERM), "django_sse", False)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        loop.close()


def test_off_the_main_thread_nothing_is_looked_at(handlers: list[tuple[str, int]]) -> None:
    loop = asyncio.new_event_loop()
    try:
        server = _server("s", handlers)
        _serve(server)
        thread = threading.Thread(target=shutdown.install, args=(loop,))
        thread.start()
        thread.join(5)
        assert signal.getsignal(signal.SIGTERM) is server
    finally:
        loop.close()
