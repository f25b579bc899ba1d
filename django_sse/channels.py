"""The channel registry: which channel names exist and who may read them.

Register channels in ``<app>/sse.py`` (autodiscovered, like ``admin.py``)::

    from django_sse import channels

    channels.register("announcements", channels.PUBLIC)
    channels.register("staff", channels.STAFF)

    @channels.register("ticket:{pk}")
    def can_read_ticket(user, pk): ...

A channel name that matches no pattern is denied, and nothing can be
published to it. Who may publish through the REST endpoint is a second policy,
``publish=`` (by default, users with the ``django_sse.publish_event``
permission who may also read the channel)::

    channels.register("ticket:{pk}", can_read_ticket, publish=can_edit_ticket)
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeAlias, overload

from asgiref.sync import SyncToAsync, async_to_sync, iscoroutinefunction, sync_to_async
from django.db import DatabaseError, InterfaceError, OperationalError

from .names import CHANNEL_NAME_RE, MAX_NAME_LENGTH, channel_name_error

logger = logging.getLogger("django_sse")

__all__ = [
    "AUTHENTICATED",
    "NOBODY",
    "PUBLIC",
    "PUBLISH_PERMISSION",
    "STAFF",
    "AlreadyRegistered",
    "ChannelError",
    "Registration",
    "Registry",
    "register",
    "registry",
    "unregister",
    "user_channel",
]


class Policy:
    """A built-in read policy. Compare by identity."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"channels.{self.name}"


PUBLIC = Policy("PUBLIC")
AUTHENTICATED = Policy("AUTHENTICATED")
STAFF = Policy("STAFF")
#: Nobody through the REST endpoint: only server code publishes.
NOBODY = Policy("NOBODY")

#: The default publish policy of a registered pattern.
PUBLISH_PERMISSION = "django_sse.publish_event"

PolicyCallable: TypeAlias = Callable[..., bool | Awaitable[bool]]
PolicyType: TypeAlias = Policy | str | PolicyCallable

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A placeholder matches one segment: anything a channel name allows except ":".
_SEGMENT = r"[A-Za-z0-9_.-]+"
USER_PATTERN = "user:{pk}"


class AlreadyRegistered(ValueError):
    pass


@dataclass(frozen=True)
class ChannelError(Exception):
    """Why a stream request was refused, as an HTTP status and one line."""

    status: int
    reason: str

    def __str__(self) -> str:
        return self.reason


SnapshotCallable: TypeAlias = Callable[..., Any]


@dataclass
class Registration:
    pattern: str
    policy: PolicyType
    regex: re.Pattern[str] = field(repr=False)
    params: tuple[str, ...] = ()
    #: Not stored: no history, no resume (typing indicators, presence).
    ephemeral: bool = False
    #: ``(user, **params) -> data``, sent as a ``snapshot`` event to new streams.
    snapshot: SnapshotCallable | None = None
    #: Who may publish through the REST endpoint (server code always may).
    publish: PolicyType = PUBLISH_PERMISSION
    #: The default publish policy also asks that the publisher may read the
    #: channel: the permission alone would let it write into ``staff``.
    publish_needs_read: bool = True
    #: Streams are counted per user, announced (``presence.join``/``leave``)
    #: and listed by ``presence()``: see docs/presence.rst.
    presence: bool = False
    #: ``(user) -> dict``: a member's data (default: pk and display name).
    member: Callable[..., Any] | None = None

    @property
    def specificity(self) -> tuple[int, int]:
        # Literal patterns win over templates; then longer literal text wins.
        literal = len(_PLACEHOLDER.sub("", self.pattern))
        return (len(self.params), -literal)

    def match(self, name: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(name)
        return m.groupdict() if m else None


def _compile(pattern: str) -> Registration:
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"channel pattern must be a non-empty string, got {pattern!r}")
    params = tuple(_PLACEHOLDER.findall(pattern))
    if len(set(params)) != len(params):
        raise ValueError(f"channel pattern {pattern!r} repeats a placeholder")
    sample = _PLACEHOLDER.sub("x", pattern)
    if "{" in sample or "}" in sample or not CHANNEL_NAME_RE.fullmatch(sample):
        raise ValueError(
            f"channel pattern {pattern!r} is malformed: literal parts may use letters, "
            "digits and _ . : -, placeholders are {name}"
        )
    parts: list[str] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(pattern):
        parts.append(re.escape(pattern[pos : m.start()]))
        parts.append(f"(?P<{m.group(1)}>{_SEGMENT})")
        pos = m.end()
    parts.append(re.escape(pattern[pos:]))
    return Registration(pattern, PUBLIC, re.compile("".join(parts)), params)


def _check_policy(pattern: str, policy: object, kind: str = "policy") -> PolicyType:
    if isinstance(policy, Policy) or callable(policy):
        return policy  # type: ignore[return-value]
    if isinstance(policy, str) and re.fullmatch(r"[\w-]+\.[\w-]+", policy):
        return policy
    raise TypeError(
        f"channel {pattern!r}: {kind} must be channels.PUBLIC, channels.AUTHENTICATED, "
        f"channels.STAFF, channels.NOBODY, a permission string 'app_label.codename' or a "
        f"callable, got {policy!r}"
    )


def _owns_user_channel(user: Any, pk: str) -> bool:
    return bool(user.is_authenticated) and str(user.pk) == pk


def _publishes_to_own_channel(user: Any, pk: str) -> bool:
    # Another user's private channel is never open to the endpoint: server
    # code (notify(), send_event()) is how a user is sent something.
    return _owns_user_channel(user, pk) and bool(user.has_perm(PUBLISH_PERMISSION))


#: Names whose resolution a registry remembers; past this it starts afresh,
#: so that hostile names cannot grow it.
RESOLVED_KEPT = 4096


class Registry:
    def __init__(self) -> None:
        self._registrations: dict[str, Registration] = {}
        #: ``resolve()``'s answers: every stream open and publish asks several
        #: times, and each miss tries every pattern's regular expression.
        self._resolved: dict[str, tuple[Registration, dict[str, str]] | None] = {}
        #: Bumped (under the lock) whenever the patterns change: an answer
        #: matched against the patterns before is not remembered after.
        self._generation = 0
        self._lock = threading.Lock()
        self._builtin()

    def _changed(self) -> None:
        with self._lock:
            self._generation += 1
            self._resolved.clear()

    def _builtin(self) -> None:
        reg = _compile(USER_PATTERN)
        reg.policy = _owns_user_channel
        reg.publish = _publishes_to_own_channel
        reg.publish_needs_read = False  # the policy itself checks ownership
        self._registrations[USER_PATTERN] = reg

    @overload
    def register(
        self,
        pattern: str,
        policy: None = None,
        *,
        ephemeral: bool = False,
        snapshot: SnapshotCallable | None = None,
        publish: PolicyType | None = None,
        presence: bool = False,
        member: Callable[..., Any] | None = None,
    ) -> Callable[[PolicyCallable], PolicyCallable]: ...
    @overload
    def register(
        self,
        pattern: str,
        policy: PolicyType,
        *,
        ephemeral: bool = False,
        snapshot: SnapshotCallable | None = None,
        publish: PolicyType | None = None,
        presence: bool = False,
        member: Callable[..., Any] | None = None,
    ) -> Registration: ...

    def register(
        self,
        pattern: str,
        policy: PolicyType | None = None,
        *,
        ephemeral: bool = False,
        snapshot: SnapshotCallable | None = None,
        publish: PolicyType | None = None,
        presence: bool = False,
        member: Callable[..., Any] | None = None,
    ) -> Registration | Callable[[PolicyCallable], PolicyCallable]:
        """Register ``pattern`` with a read ``policy``; without one, decorate a callable.

        ``ephemeral=True`` keeps the channel's events out of history.
        ``snapshot`` is called as ``snapshot(user, **params)`` (sync or async)
        when a stream subscribes without resuming; its result is sent first,
        as a ``snapshot`` event. ``publish`` says who may publish to the
        channel through the REST endpoint, as a read policy says who may read;
        by default, users with the ``django_sse.publish_event`` permission who
        may also read the channel. Server code (``send_event``) always may.
        ``presence=True`` makes it a presence channel, whose members'
        data ``member(user)`` returns (docs/presence.rst)."""
        if policy is None:

            def decorator(func: PolicyCallable) -> PolicyCallable:
                self.register(
                    pattern,
                    func,
                    ephemeral=ephemeral,
                    snapshot=snapshot,
                    publish=publish,
                    presence=presence,
                    member=member,
                )
                return func

            return decorator
        if snapshot is not None and not callable(snapshot):
            raise TypeError(f"channel {pattern!r}: snapshot must be callable, got {snapshot!r}")
        if member is not None and not callable(member):
            raise TypeError(f"channel {pattern!r}: member must be callable, got {member!r}")
        if member is not None and not presence:
            raise TypeError(f"channel {pattern!r}: member= needs presence=True")
        reg = _compile(pattern)
        reg.policy = _check_policy(pattern, policy)
        reg.presence = bool(presence)
        reg.member = member
        reg.ephemeral = bool(ephemeral)
        reg.snapshot = snapshot
        if publish is not None:
            reg.publish = _check_policy(pattern, publish, "publish policy")
            reg.publish_needs_read = False
        if pattern in self._registrations:
            raise AlreadyRegistered(
                f"channel pattern {pattern!r} is already registered"
                + (" (it is built in: use user_channel(user))" if pattern == USER_PATTERN else "")
            )
        self._registrations[pattern] = reg
        self._changed()
        return reg

    def unregister(self, pattern: str) -> None:
        if pattern == USER_PATTERN:
            raise ValueError(f"{USER_PATTERN!r} is built in and cannot be unregistered")
        self._registrations.pop(pattern, None)
        self._changed()

    def clear(self) -> None:
        """Forget every registration but the built-in user channel (for tests)."""
        self._registrations.clear()
        self._builtin()
        self._changed()

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._registrations.values()))

    def is_stored(self, name: str) -> bool:
        """Whether events of ``name`` go to history (not ephemeral)."""
        found = self.resolve(name)
        return found is None or not found[0].ephemeral

    def resolve(self, name: str) -> tuple[Registration, dict[str, str]] | None:
        """The most specific registration matching ``name``, with its parameters."""
        try:
            found = self._resolved[name]
        except KeyError:
            generation = self._generation
            found = self._match(name)
            # Only a name that can be a channel's is kept (each at most
            # MAX_NAME_LENGTH), and only if no pattern changed meanwhile (a
            # register() on another thread while this one matched).
            if len(name) <= MAX_NAME_LENGTH:
                with self._lock:
                    if generation == self._generation:
                        if len(self._resolved) >= RESOLVED_KEPT:
                            self._resolved.clear()
                        self._resolved[name] = found
        # The parameters are the caller's to keep: a copy, never the cache's.
        return None if found is None else (found[0], dict(found[1]))

    def _match(self, name: str) -> tuple[Registration, dict[str, str]] | None:
        best: tuple[Registration, dict[str, str]] | None = None
        # A copy: another thread may register meanwhile.
        for reg in list(self._registrations.values()):
            params = reg.match(name)
            if params is not None and (best is None or reg.specificity < best[0].specificity):
                best = (reg, params)
        return best

    def require(self, name: str) -> tuple[Registration, dict[str, str]]:
        """The registration of ``name``; ``ValueError`` if it has none, because
        its events could never be read (a typo would be stored for good)."""
        found = self.resolve(name)
        if found is None:
            raise ValueError(
                f"channel {name!r} matches no registered channel pattern, so nobody could "
                "read its events: register it in <app>/sse.py with channels.register()"
            )
        return found

    def authorize_publish(self, user: Any, name: object) -> None:
        """Raise ``ChannelError`` (400 or 403) unless ``user`` may publish to
        ``name`` through the REST endpoint. Sync: the endpoint is a sync view."""
        error = channel_name_error(name)
        if error is not None:
            raise ChannelError(400, error)
        assert isinstance(name, str)
        found = self.resolve(name)
        if found is None:
            raise ChannelError(400, f"channel {name!r} matches no registered channel")
        reg, params = found
        try:
            allowed = _evaluate_sync(reg.publish, user, params)
            if allowed and reg.publish_needs_read:
                allowed = _evaluate_sync(reg.policy, user, params)
        except Exception:
            logger.exception("Publish check for channel %r raised; publishing denied", name)
            allowed = False
        if not allowed:
            who = "anonymous users are" if not user.is_authenticated else "you are"
            raise ChannelError(403, f"{who} not allowed to publish to channel {name!r}")

    async def authorize(self, user: Any, name: str) -> None:
        """Raise ``ChannelError`` (404 or 403) unless ``user`` may read ``name``."""
        found = self.resolve(name)
        if found is None:
            raise ChannelError(404, f"channel {name!r} matches no registered channel")
        reg, params = found
        try:
            allowed = await _evaluate(reg.policy, user, params)
        except DatabaseError as exc:
            # Not a "no": a 403 would make clients give up for good, during the
            # very outage (or resume storm) they should ride out.
            logger.warning("Permission check for channel %r met a database error: %s", name, exc)
            raise ChannelError(
                503, f"the permission check for channel {name!r} is unavailable: try again shortly"
            ) from None
        except Exception:
            logger.exception("Permission check for channel %r raised; access denied", name)
            allowed = False
        if not allowed:
            who = "anonymous users are" if not user.is_authenticated else "you are"
            raise ChannelError(403, f"{who} not allowed to read channel {name!r}")


async def call_user_code(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a sync or async function of the app's from async code.

    A sync one may query the database, so it runs in a worker thread: the
    request's own when there is one (a thread-sensitive context: Django's
    view, the fast path while it checks a request), else one of a few threads
    that heal their database connections; never asgiref's single shared
    thread, where every stream of the process would queue."""
    call = type(func).__call__ if not isinstance(func, type) else None
    if iscoroutinefunction(func) or (call is not None and iscoroutinefunction(call)):
        return await func(*args, **kwargs)
    if SyncToAsync.thread_sensitive_context.get(None) is not None:
        result = await sync_to_async(func)(*args, **kwargs)
    else:
        from .dbthreads import run_user_code

        result = await run_user_code(partial(func, *args, **kwargs))
    if isinstance(result, Awaitable):
        result = await result
    return result


def _built_in(policy: PolicyType, user: Any) -> bool | None:
    """The answer of a built-in policy, or ``None`` for any other kind."""
    if policy is PUBLIC:
        return True
    if policy is NOBODY:
        return False
    if policy is AUTHENTICATED:
        return bool(user.is_authenticated)
    if policy is STAFF:
        return bool(user.is_authenticated and user.is_active and user.is_staff)
    return None


async def _evaluate(policy: PolicyType, user: Any, params: dict[str, str]) -> bool:
    answer = _built_in(policy, user)
    if answer is not None:
        return answer
    if isinstance(policy, str):
        if not user.is_authenticated:
            return False
        try:
            return bool(await user.ahas_perm(policy))
        except (InterfaceError, OperationalError):
            # A read on a connection the database dropped (a restart, a killed
            # backend): once more on a fresh one, as the store's reads do.
            from .dbthreads import release_connections

            await release_connections()
            return bool(await user.ahas_perm(policy))
    assert callable(policy)
    if policy is _owns_user_channel:
        return _owns_user_channel(user, **params)
    return bool(await call_user_code(policy, user, **params))


def _evaluate_sync(policy: PolicyType, user: Any, params: dict[str, str]) -> bool:
    answer = _built_in(policy, user)
    if answer is not None:
        return answer
    if isinstance(policy, str):
        return bool(user.is_authenticated) and bool(user.has_perm(policy))
    assert callable(policy)
    call = type(policy).__call__ if not isinstance(policy, type) else None
    if iscoroutinefunction(policy) or (call is not None and iscoroutinefunction(call)):
        return bool(async_to_sync(policy)(user, **params))  # type: ignore[arg-type]
    result = policy(user, **params)
    if isinstance(result, Awaitable):
        result = async_to_sync(_awaited)(result)
    return bool(result)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def user_channel(user: Any) -> str:
    """The private channel of ``user``: ``"user:<pk>"``, readable by that user only."""
    if not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        raise ValueError("user_channel() needs a saved, authenticated user")
    name = f"user:{user.pk}"
    if not re.fullmatch(_SEGMENT, str(user.pk)) or not CHANNEL_NAME_RE.fullmatch(name):
        raise ValueError(f"user pk {user.pk!r} cannot be part of a channel name")
    return name


registry = Registry()
register = registry.register
unregister = registry.unregister
