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


def test_a_cancelled_job_does_not_stop_the_queue(loop_thread: LoopThread) -> None:
    # A layer client can leak a CancelledError (a BaseException): the queue's
    # one consumer must outlive it, or every later publish is silently dropped.
    errors: list[str] = []

    async def cancelled(timeout: float) -> None:
        raise asyncio.CancelledError

    async def ok(timeout: float) -> None:
        pass

    loop_thread.publish(cancelled, wait=False, on_error=lambda: errors.append("cancelled"))
    with pytest.raises(RuntimeError, match="cancelled"):
        loop_thread.publish(cancelled, wait=True)
    with override_settings(SSE_PUBLISH_TIMEOUT=BOUND):
        loop_thread.publish(ok, wait=True)
    assert errors == ["cancelled"]
    assert not loop_thread.consumer.done()


def test_a_failing_error_callback_does_not_stop_the_queue(loop_thread: LoopThread) -> None:
    async def fails(timeout: float) -> None:
        raise ConnectionRefusedError("layer down")

    async def ok(timeout: float) -> None:
        pass

    def broken() -> None:
        raise RuntimeError("a broken log handler")

    loop_thread.publish(fails, wait=False, on_error=broken)
    with override_settings(SSE_PUBLISH_TIMEOUT=BOUND):
        loop_thread.publish(ok, wait=True)
    assert not loop_thread.consumer.done()


def test_runner_replaces_a_dead_loop_thread() -> None:
    first = publish_thread.runner()
    first.close()  # as if its thread had died
    try:
        second = publish_thread.runner()
        assert second is not first

        async def ok(timeout: float) -> None:
            pass

        with override_settings(SSE_PUBLISH_TIMEOUT=BOUND):
            second.publish(ok, wait=True)
    finally:
        publish_thread.runner()


def test_a_forked_child_gets_its_own_working_publisher() -> None:
    # gunicorn and celery prefork: the child inherits the parent's LoopThread
    # object (and maybe its lock, held) but not its thread.
    import os

    async def ok(timeout: float) -> None:
        await asyncio.sleep(0)

    async def slow(timeout: float) -> None:
        await asyncio.sleep(0.2)

    parent = publish_thread.runner()
    parent.publish(ok, wait=True)
    for _ in range(3):
        parent.publish(slow, wait=False)  # queued in the parent at fork time
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            with override_settings(SSE_PUBLISH_TIMEOUT=2.0):
                child = publish_thread.runner()
                if child is not parent and child.pid == os.getpid():
                    child.publish(ok, wait=True)
                    code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's publish hung")
    assert os.waitstatus_to_exitcode(status) == 0
    parent.drain()
