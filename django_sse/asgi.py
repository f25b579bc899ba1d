"""The ASGI fast path: the stream URL served without Django's request thread.

In the project's ``asgi.py``::

    from django.core.asgi import get_asgi_application
    from django_sse.asgi import fast_path

    application = fast_path(get_asgi_application())

``GET`` requests for the stream URL (``reverse("django_sse:stream")``) are
served here; everything else goes to the wrapped application. A Django async
view costs an OS thread and its stack for every open stream; this door costs
two asyncio tasks. Authentication, channel checks, resume and headers are the
view's own (:func:`django_sse.request.accept`); the session and the user are
read on the store threads, so no thread is held while the stream is open.
Django middleware does not run for these requests.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

from asgiref.sync import SyncToAsync, ThreadSensitiveContext
from django.apps import apps
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.urls import NoReverseMatch, get_script_prefix, reverse

from . import dbthreads, direct, shutdown
from .conf import conf
from .direct import DirectWriter
from .request import CONTENT_TYPE, ERROR_CONTENT_TYPE, STREAM_HEADERS, error_body, error_headers

# The stream core is imported on first use, not here: asgi.py may import this
# module before Django is set up.

logger = logging.getLogger("django_sse")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HEADERS = [(b"content-type", CONTENT_TYPE.encode())] + [
    (name.lower().encode(), value.encode()) for name, value in STREAM_HEADERS.items()
]


def stream_path() -> str | None:
    """The stream URL's path below the script prefix, or ``None`` when the
    URLconf does not include ``django_sse.urls``."""
    try:
        path = reverse("django_sse:stream")
    except NoReverseMatch:
        return None
    return "/" + path[len(get_script_prefix()) :]


def _user(request: ASGIRequest) -> Any:
    from django.contrib.auth import get_user

    return get_user(request)  # type: ignore[arg-type]


def _prepare(request: ASGIRequest) -> None:
    """Give ``request`` what the view's middleware would: a session and ``auser``."""
    if apps.is_installed("django.contrib.sessions"):
        from .auth import attach_session

        attach_session(request)
    if apps.is_installed("django.contrib.auth") and hasattr(request, "session"):
        request.auser = partial(dbthreads.run, _user, request)  # type: ignore[attr-defined]
    else:

        async def anonymous() -> Any:
            from django.contrib.auth.models import AnonymousUser

            return AnonymousUser()

        request.auser = anonymous  # type: ignore[attr-defined]


async def _error(send: Send, status: int, reason: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = error_body(reason).encode()
    headers = [
        (b"content-type", ERROR_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in error_headers(status).items()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _pump(chunks: AsyncIterator[bytes], send: Send, writer: DirectWriter | None) -> None:
    if writer is None:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    else:
        async for chunk in chunks:
            await writer.write(chunk)
        await writer.write(b"")  # after any direct write still in flight
    await send({"type": "http.response.body", "body": b""})


async def serve(scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one stream request, from the first byte to the client's going."""
    from .channels import ChannelError
    from .cors import response_headers
    from .events import control, retry
    from .request import accept
    from .stream import event_stream

    shutdown.install(asyncio.get_running_loop())
    request = ASGIRequest(scope, io.BytesIO())
    _prepare(request)
    # On refusals too, as the view does: an allowed page can then read why.
    cors_headers = [
        (name.lower().encode(), value.encode())
        for name, value in response_headers(request.headers.get("Origin")).items()
    ]
    # Policies, ``ahas_perm`` and sessions run sync code. Without a context of
    # its own, every such call of every stream of the process queues on
    # asgiref's one shared thread, whose connection nobody checks; this
    # request's thread and connection live only while the request is checked.
    async with ThreadSensitiveContext() as context:
        try:
            accepted = await accept(request)
        except ChannelError as exc:
            await _error(send, exc.status, exc.reason, cors_headers)
            return
        finally:
            if context in SyncToAsync.context_to_thread_executor:
                # As the view does: the thread goes, and must not take an
                # open connection with it.
                await dbthreads.release_connections()
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS + cors_headers})
    if shutdown.closing.is_set():
        # Shutting down: this stream would outlive the hub. Back in a moment.
        if accepted.slot is not None:
            accepted.slot.release()
        closed = {"reason": shutdown.CLOSE_REASON, "reconnect": True}
        body = retry(conf.SSE_RETRY_MS) + control("stream-closed", closed, None)
        await send({"type": "http.response.body", "body": body})
        return
    writer = DirectWriter(send) if direct.supports(send) else None
    chunks = event_stream(
        accepted.channels,
        last_event_id=accepted.last_event_id,
        identity=accepted.identity,
        slot=accepted.slot,
        door="asgi",
        connection=accepted.connection,
        direct=writer,
    )
    del request, accepted
    done = shutdown.opened()
    try:
        await _stream(chunks, receive, send, writer)
    finally:
        shutdown.ended(done)


async def _stream(
    chunks: AsyncIterator[bytes], receive: Receive, send: Send, writer: DirectWriter | None = None
) -> None:
    """Write ``chunks`` in this task until they end or the client goes.

    The client's going is awaited by a second task, which cancels this one:
    one task and no ``asyncio.wait`` fewer per open stream than running both
    sides as tasks."""
    task = asyncio.current_task()
    assert task is not None
    if writer is not None:
        writer.task = task
    left = ending = False

    def client_left(gone: asyncio.Task[None]) -> None:
        nonlocal left
        # Not once the pump is over: a cancel then would land in the cleanup
        # below and fail a request that ended well.
        if not ending and not gone.cancelled():
            left = True
            task.cancel()

    gone = asyncio.ensure_future(_until_disconnect(receive))
    gone.add_done_callback(client_left)
    error: BaseException | None = None
    try:
        await _pump(chunks, send, writer)
    except asyncio.CancelledError:
        # Ours (the client left, a direct write failed) ends the stream
        # quietly; anyone else's (the server stopping) goes on up, even
        # when it came together with ours.
        if not left and (writer is None or writer.error is None):
            raise
        if task.uncancel() > 0:
            raise
    except Exception as exc:
        error = exc
    finally:
        ending = True
        if writer is not None:
            writer.task = None
        gone.remove_done_callback(client_left)
        gone.cancel()
        try:
            # Cancelled while waiting in send(), the generator still holds its
            # subscription: close it so the hub lets go now, not at collection.
            await chunks.aclose()  # type: ignore[attr-defined]
        finally:
            # No send of this request goes on once it returns to the server.
            pending = [gone] if writer is None else [gone, *writer.cancel()]
            await asyncio.gather(*pending, return_exceptions=True)
    if writer is not None and writer.error is not None:
        error = writer.error
    if isinstance(error, Exception) and not isinstance(error, OSError):
        logger.error("Event stream failed", exc_info=error)


async def _start_hub() -> None:
    """Start the hub before the server accepts a stream: its layer connection
    is then made on an idle loop, not by the first of thousands of streams
    resuming at once after a restart. A layer that does not answer does not
    keep the server from starting (the hub connects later)."""
    from .hub import get_hub

    try:
        await get_hub().start()
    except Exception:
        logger.warning("django_sse: the hub did not start at lifespan startup", exc_info=True)


async def lifespan(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI lifespan protocol, passed through to ``app`` when it speaks it,
    answered here when it does not (Django's handler rejects it).

    Startup chains the server's signal handlers, so that streams are closed as
    soon as a shutdown begins (:mod:`django_sse.shutdown`); ``lifespan.shutdown``
    closes whatever is still open."""
    received: list[str] = []
    sent: list[str] = []

    async def app_receive() -> Message:
        message = await receive()
        received.append(message["type"])
        if message["type"] == "lifespan.startup":
            shutdown.closing.clear()
            shutdown.install(asyncio.get_running_loop())
            await _start_hub()
        elif message["type"] == "lifespan.shutdown":
            await shutdown.close_streams()
        return message

    async def app_send(message: Message) -> None:
        sent.append(message["type"])
        await send(message)

    try:
        await app(scope, app_receive, app_send)
    except Exception:
        if sent:
            raise  # the application speaks lifespan, and failed
    else:
        if sent:
            return
    # The application does not speak lifespan: answer for it.
    if "lifespan.startup" in received:
        await send({"type": "lifespan.startup.complete"})
    if "lifespan.shutdown" in received:
        await send({"type": "lifespan.shutdown.complete"})
        return
    while True:
        kind = (await app_receive())["type"]
        if kind == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class FastPath:
    """An ASGI application: the stream URL here, everything else to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._path: str | None = None
        self._resolved = False

    @property
    def path(self) -> str | None:
        if not self._resolved:
            self._path = stream_path()
            self._resolved = True
            if self._path is None:
                logger.warning(
                    "django_sse fast path: the URLconf does not include django_sse.urls; "
                    "every request goes to the wrapped application"
                )
        return self._path

    def handles(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "GET" or self.path is None:
            return False
        # As Django's ASGI handler computes the script prefix.
        prefix = settings.FORCE_SCRIPT_NAME or scope.get("root_path", "") or ""
        path = scope["path"]
        if prefix and path.startswith(prefix):
            path = path[len(prefix) :]
        return bool(path == self.path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.handles(scope):
            await serve(scope, receive, send)
        elif scope["type"] == "lifespan":
            await lifespan(self.app, scope, receive, send)
        else:
            await self.app(scope, receive, send)


def fast_path(app: ASGIApp) -> FastPath:
    """Wrap the project's ASGI application so streams skip Django's request thread."""
    return FastPath(app)


def wraps_fast_path(app: Any, depth: int = 6) -> bool:
    """Whether ``app``, or an application it wraps, is a :class:`FastPath`.

    Follows the attributes wrappers keep their application in (static files
    handlers, Channels' ``ProtocolTypeRouter``, middleware)."""
    if isinstance(app, FastPath):
        return True
    if depth == 0:
        return False
    inner: list[Any] = [getattr(app, name, None) for name in ("app", "application", "inner")]
    mapping = getattr(app, "application_mapping", None)
    if isinstance(mapping, dict):
        inner.extend(mapping.values())
    return any(wraps_fast_path(x, depth - 1) for x in inner if x is not None and x is not app)
