"""The publishing loop thread of sync code (``django_sse.publish_thread``):
queued publishes run in call order, each within ``SSE_PUBLISH_TIMEOUT`` of its
call however long the queue, a full queue holds the caller at most that long,
and ``drain()`` waits for what is queued. Jobs are real coroutines on the
thread's loop; a stalled layer is a job that never finishes by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from django.test import override_settings

from django_sse import publish_thread
from django_sse.publish_thread import LoopThread

BOUND = 0.3


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


async def _stalled(timeout: float) -> None:
    # A layer that accepts and never answers, bounded as layer.group_send is.
    try:
        await asyncio.wait_for(asyncio.Event().wait(), max(timeout, 0.0))
    except TimeoutError:
        raise TimeoutError("stalled") from None


def test_queued_publishes_run_in_call_order(loop_thread: LoopThread) -> None:
    seen: list[int] = []

    def job(n: int):  # type: ignore[no-untyped-def]
        async def run(timeout: float) -> None:
            await asyncio.sleep(0.001 if n % 2 else 0)  # some yield, some do not
            seen.append(n)

        return run

    for n in range(50):
        loop_thread.publish(job(n), wait=False)
    loop_thread.publish(job(50), wait=True)
    assert seen == list(range(51))


def test_waited_publish_raises_its_error(loop_thread: LoopThread) -> None:
    async def fails(timeout: float) -> None:
        raise ConnectionRefusedError("layer down")

    with pytest.raises(ConnectionRefusedError):
        loop_thread.publish(fails, wait=True)


def test_a_queue_behind_a_stalled_layer_drains_within_the_timeout(
    loop_thread: LoopThread,
) -> None:
    errors: list[str] = []

    def on_error() -> None:
        errors.append("failed")

    with override_settings(SSE_PUBLISH_TIMEOUT=BOUND):
        started = time.monotonic()
        for _ in range(20):
            loop_thread.publish(_stalled, wait=False, on_error=on_error)
        queued = time.monotonic() - started
        loop_thread.drain()
        drained = time.monotonic() - started
    # Not 20 x BOUND: every job had BOUND from its call, not from its turn.
    assert queued < BOUND, queued
    assert drained < BOUND + 0.5, drained
    assert errors == ["failed"] * 20


def test_a_full_queue_holds_the_caller_at_most_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publish_thread, "QUEUE_LIMIT", 2)
    thread = LoopThread()
    errors: list[str] = []
    try:
        with override_settings(SSE_PUBLISH_TIMEOUT=BOUND):
            thread.publish(_stalled, wait=False, on_error=lambda: errors.append("1"))
            thread.publish(_stalled, wait=False, on_error=lambda: errors.append("2"))
            started = time.monotonic()
            # Room comes when the first stalled job gives up, BOUND after its call.
            thread.publish(_stalled, wait=False, on_error=lambda: errors.append("3"))
            waited = time.monotonic() - started
            assert waited < BOUND + 0.3, waited
            with pytest.raises(TimeoutError):
                thread.publish(_stalled, wait=True)
            thread.drain()
    finally:
        thread.close()
    assert sorted(errors) == ["1", "2", "3"]
