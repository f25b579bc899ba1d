"""Streams end when the session or the user behind them does.

Django ends a session in ways that send no logout signal: a password change
(the session's auth hash no longer matches the user's), a deleted row (the
admin, ``clearsessions``, ``SessionStore(key).flush()``, raw SQL), a deleted or
deactivated user. Every hub checks the sessions and users of its open streams
every ``SSE_SESSION_CHECK_INTERVAL`` seconds, one batched query per kind for
all its streams (so the cost grows with distinct sessions, not streams), and
closes the streams whose access is gone. Signals make the common cases faster.

A key rotation (``cycle_key()``, which ``login()`` and
``update_session_auth_hash()`` call) deletes the old row too, but the session
lives on under a new key: it is recorded (``SessionRotation``) as it happens,
and the old key's streams close with ``SESSION_CHANGED`` (the client
reconnects). They never follow the new key: a copy of the old cookie must not
outlive the rotation that a password change makes to shut it out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from . import dbthreads
from .conf import conf

logger = logging.getLogger("django_sse")

#: Close reasons (the client must not reconnect, but for ``SESSION_CHANGED``).
PASSWORD_CHANGED = "password changed"
SESSION_ENDED = "session ended"
USER_DELETED = "user deleted"
REVOKED = "revoked"
SESSION_EXPIRED = "session expired"
#: The key was rotated, or is gone from an engine that cannot tell a rotation
#: from an end (``cache``): the client reconnects with its current cookie, and
#: its new request is checked afresh.
SESSION_CHANGED = "session changed"

#: Seconds a rotation is remembered: every process's check sees it well before.
ROTATION_KEPT = 300.0
#: ``cycle_key()`` deletes the old row right after creating the new one.
PAIRING_WINDOW = 2.0
#: Primary keys per ``IN`` list.
BATCH = 500

SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"
SESSION_KEY = "_auth_user_id"
BACKEND_KEY = "_auth_user_backend"
HASH_KEY = "_auth_user_hash"


def digest(key: str) -> str:
    """A keyed hash of a session key, to store in its place."""
    return salted_hmac("django_sse.session-rotation", key, algorithm="sha256").hexdigest()


#: Prefix of a REST framework ``Token`` in place of a session key.
DRF_PREFIX = "drf:"


def credential(key: str) -> str:
    """What a stream records for a REST framework ``Token`` key: a keyed hash,
    never the key (in ``rest_framework.authtoken`` the key is the primary key)."""
    mac = salted_hmac("django_sse.drf-token", key, algorithm="sha256").hexdigest()
    return DRF_PREFIX + mac


def is_credential(key: str | None) -> bool:
    return bool(key and key.startswith(DRF_PREFIX))


def credentials(owners: set[str]) -> set[tuple[str, str]]:
    """``(credential, owner)`` of every REST framework Token of ``owners``
    (empty when ``rest_framework.authtoken`` is not installed)."""
    from django.apps import apps

    if not owners or not apps.is_installed("rest_framework.authtoken"):
        return set()
    from rest_framework.authtoken.models import Token

    found: set[tuple[str, str]] = set()
    for chunk in _chunks(owners):
        for key, user_id in Token.objects.filter(user_id__in=chunk).values_list("key", "user_id"):
            found.add((credential(key), str(user_id)))
    return found


def store_class() -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore


def session_model() -> Any:
    """The model of the configured session engine, or ``None`` (``cache``, ``file``)."""
    store = store_class()
    return store.get_model_class() if hasattr(store, "get_model_class") else None


def verifiable() -> bool:
    """Whether sessions can be checked server-side (not with ``signed_cookies``)."""
    return bool(settings.SESSION_ENGINE != SIGNED_COOKIES)


@register(Tags.security)
def check_session_engine(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W012: with signed cookies no session can be ended server-side."""
    if verifiable():
        return []
    return [
        Warning(
            "SESSION_ENGINE is signed_cookies: a password change or a session ended "
            "elsewhere cannot close open event streams, since no session is stored "
            "server-side.",
            hint="Use the 'db', 'cached_db' or 'cache' session engine; with signed cookies "
            "only logout, deactivating or deleting the user and expiry end streams.",
            obj="SESSION_ENGINE",
            id="django_sse.W012",
        )
    ]


# -- rotations -----------------------------------------------------------------

#: The session row this context created last, until the next delete.
_created: ContextVar[tuple[float, Any] | None] = ContextVar("django_sse_created", default=None)


def on_session_saved(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    """``post_save`` of the session model: ``cycle_key()`` creates the new row,
    then deletes the old one. Any other save ends the pairing."""
    _created.set((time.monotonic(), instance) if created else None)


def on_request_started(**kwargs: Any) -> None:
    """``request_started``: a row created by an earlier request on this thread
    (WSGI threads keep their context) never pairs with this one's deletes."""
    _created.set(None)


def on_session_deleting(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``pre_delete`` of the session model: record a rotation, or end the
    session's streams now rather than at the next check."""
    created = _created.get()
    _created.set(None)
    expire = getattr(instance, "expire_date", None)
    if expire is not None and expire <= timezone.now():
        # Expired (``clearsessions``): its streams closed at expiry.
        return
    data = _decode(instance)
    owner = data.get(SESSION_KEY)
    if owner is None:
        return  # anonymous: no stream hangs on it
    if created is not None and time.monotonic() - created[0] < PAIRING_WINDOW:
        new = created[1]
        # cycle_key() copies the data as it is: equal data, a new key.
        if new.session_key != instance.session_key and _decode(new) == data:
            record_rotation(instance.session_key, new.session_key)
            return
    from .revocation import revoke_soon

    revoke_soon(str(owner), instance.session_key)


def _decode(instance: Any) -> dict[str, Any]:
    try:
        decoded: dict[str, Any] = instance.get_decoded()
    except Exception:
        return {}
    return decoded


def record_rotation(old: str, new: str) -> None:
    from .models import SessionRotation

    now = timezone.now()
    SessionRotation.objects.filter(created__lt=now - timedelta(seconds=ROTATION_KEPT)).delete()
    SessionRotation.objects.update_or_create(
        # Only the fact matters (nothing follows the new key): neither raw
        # key is stored.
        old=digest(old),
        defaults={"new_key": "", "created": now},
    )


# -- checks ----------------------------------------------------------------------


@dataclass(frozen=True)
class SessionState:
    """A session as the check found it."""

    key: str
    #: The decoded data, or ``None``: the session is gone.
    data: dict[str, Any] | None
    expires_at: float | None = None
    #: Epoch seconds of the key's rotation, if it was rotated away.
    rotated_at: float | None = None


#: Decoded session data by key, while the stored text is unchanged: decoding
#: costs ~150 µs, and most sessions do not change between two checks.
_decoded: dict[str, tuple[str, Any, dict[str, Any]]] = {}
DECODED_KEPT = 50_000


def _decode_row(model: Any, key: str, text: str, secret: Any) -> dict[str, Any]:
    hit = _decoded.get(key)
    if hit is not None and hit[0] == text and hit[1] == secret:
        return hit[2]
    data = _decode(model(session_key=key, session_data=text))
    if len(_decoded) >= DECODED_KEPT:
        _decoded.clear()
    _decoded[key] = (text, secret, data)
    return data


def _chunks(items: Iterable[str]) -> Iterable[list[str]]:
    items = list(items)
    for i in range(0, len(items), BATCH):
        yield items[i : i + BATCH]


def _rows(model: Any, keys: Iterable[str]) -> dict[str, tuple[str, Any]]:
    """``key: (session_data, expire_date)`` of the rows that exist."""
    found: dict[str, tuple[str, Any]] = {}
    for chunk in _chunks(keys):
        rows = model._default_manager.filter(session_key__in=chunk).values_list(
            "session_key", "session_data", "expire_date"
        )
        for key, text, expire in rows:
            found[key] = (text, expire)
    return found


def _rotations(keys: Iterable[str]) -> dict[str, float]:
    """When each of ``keys`` that was rotated away was (epoch seconds)."""
    from .models import SessionRotation

    by_digest = {digest(k): k for k in keys}
    found: dict[str, float] = {}
    for chunk in _chunks(by_digest):
        rows = SessionRotation.objects.filter(old__in=chunk).values_list("old", "created")
        for old, created in rows:
            found[by_digest[old]] = created.timestamp()
    return found


def _model_sessions(model: Any, keys: set[str]) -> dict[str, SessionState]:
    rows = _rows(model, keys)
    # A missing row: rotated (reconnect with the new cookie) or ended.
    rotated = _rotations(keys - rows.keys())
    states: dict[str, SessionState] = {}
    # What decoding depends on: a new secret decodes afresh.
    secret = (settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS))
    for key in keys:
        row = rows.get(key)
        if row is None:
            states[key] = SessionState(key, None, rotated_at=rotated.get(key))
        else:
            text, expire = row
            states[key] = SessionState(
                key, _decode_row(model, key, text, secret), expire.timestamp()
            )
    return states


def _other_sessions(keys: set[str]) -> dict[str, SessionState]:
    store_cls = store_class()
    states: dict[str, SessionState] = {}
    for key in keys:
        store = store_cls(key)
        if not store.exists(key):
            states[key] = SessionState(key, None)
            continue
        data = dict(store.load())
        states[key] = SessionState(key, data or None, time.time() + store.get_expiry_age())
    return states


def sessions(keys: set[str]) -> dict[str, SessionState]:
    """The state of each session key (sync: call on a store thread)."""
    if not keys or not verifiable():
        return {}
    model = session_model()
    return _model_sessions(model, keys) if model is not None else _other_sessions(keys)


def _default_hash(model: Any) -> bool:
    """Whether ``model`` hashes sessions as Django does: from the password only."""
    from django.contrib.auth.base_user import AbstractBaseUser

    own = getattr(model, "get_session_auth_hash", None)
    return own is not None and own is AbstractBaseUser.get_session_auth_hash


def users(owners: set[str]) -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    model = get_user_model()
    queryset = model._default_manager.all()
    if _default_hash(model):
        # What the check reads: the hash needs the password only.
        names = {f.name for f in model._meta.concrete_fields}
        queryset = queryset.only(*(n for n in ("password", "is_active") if n in names))
    found: dict[str, Any] = {}
    for chunk in _chunks(owners):
        try:
            for user in queryset.filter(pk__in=chunk):
                found[str(user.pk)] = user
        except (ValueError, TypeError):
            continue  # a key that is no primary key of this model: no user
    return found


#: Session auth hashes by ``(pk, password hash, secret)``, across checks: an
#: HMAC per user and check is most of a check's CPU, and passwords seldom change.
_hashes: dict[tuple[str, str, str], str] = {}
HASHES_KEPT = 50_000


def _auth_hash(user: Any) -> str:
    if not _default_hash(type(user)):
        return str(user.get_session_auth_hash())
    key = (str(user.pk), str(user.password), str(settings.SECRET_KEY))
    current = _hashes.get(key)
    if current is None:
        if len(_hashes) >= HASHES_KEPT:
            _hashes.clear()
        current = _hashes[key] = str(user.get_session_auth_hash())
    return current


def _hash_ok(stored: Any, user: Any) -> bool:
    if not hasattr(user, "get_session_auth_hash"):
        return True
    if not stored:
        return False
    # Once per user and check, not once per session.
    current = user.__dict__.get("_django_sse_hash")
    if current is None:
        current = user.__dict__["_django_sse_hash"] = _auth_hash(user)
    if constant_time_compare(stored, current):
        return True
    fallbacks = getattr(user, "get_session_auth_fallback_hash", lambda: ())()
    return any(constant_time_compare(stored, h) for h in fallbacks)


def verdict(
    state: SessionState | None,
    user: Any,
    owner: str,
    now: float,
    model_backed: bool = True,
    backends: frozenset[str] | None = None,
) -> str | None:
    """Why a stream of ``owner`` through this session must close, or ``None``."""
    if user is None:
        return USER_DELETED
    if getattr(user, "is_active", True) is False:
        return REVOKED
    if state is None:
        return None  # not a session stream, or the engine cannot be checked
    if state.data is None:
        if state.rotated_at is not None or not model_backed:
            return SESSION_CHANGED
        return SESSION_ENDED
    if str(state.data.get(SESSION_KEY)) != owner:
        return SESSION_ENDED
    if backends is None:
        backends = frozenset(settings.AUTHENTICATION_BACKENDS)
    if state.data.get(BACKEND_KEY) not in backends:
        return SESSION_ENDED
    if state.expires_at is not None and state.expires_at <= now:
        return SESSION_EXPIRED
    if not _hash_ok(state.data.get(HASH_KEY), user):
        return PASSWORD_CHANGED
    return None


Pair = tuple[str | None, str]


def verify(pairs: set[Pair]) -> dict[Pair, tuple[str | None, str | None]]:
    """For each ``(session key or None, owner)``: a close reason or ``None``,
    and the session key (unchanged: a rotated key is never followed; sync:
    call on a store thread)."""
    found = users({owner for _, owner in pairs})
    states = sessions({key for key, _ in pairs if key and not is_credential(key)})
    # A REST framework Token lives as long as its row, for the same user.
    live = credentials({owner for key, owner in pairs if is_credential(key)})
    backed = session_model() is not None
    backends = frozenset(settings.AUTHENTICATION_BACKENDS)
    now = time.time()
    out: dict[Pair, tuple[str | None, str | None]] = {}
    for key, owner in pairs:
        state = states.get(key) if key else None
        reason = verdict(state, found.get(owner), owner, now, backed, backends)
        if reason is None and is_credential(key) and (key, owner) not in live:
            reason = REVOKED
        out[(key, owner)] = (reason, state.key if state else key)
    return out


def check_session(key: str, owner: str) -> tuple[str | None, str, float | None]:
    """One session of ``owner``: why it no longer grants access (or ``None``;
    ``SESSION_CHANGED`` for a rotated key), the key and its expiry (sync: call
    on a store thread). ``key`` may be a REST framework Token's :func:`credential`."""
    if is_credential(key):
        user = users({owner}).get(owner)
        reason = verdict(None, user, owner, time.time())
        if reason is None and (key, owner) not in credentials({owner}):
            reason = REVOKED
        return reason, key, None
    state = sessions({key}).get(key)
    backed = session_model() is not None
    reason = verdict(state, users({owner}).get(owner), owner, time.time(), backed)
    if state is None:
        return reason, key, None
    return reason, state.key, state.expires_at


# -- the hub's loop -----------------------------------------------------------------


async def check_hub(hub: Any) -> int:
    """Check the open streams of ``hub`` once; return how many were closed."""
    subs = [s for s in hub._subscriptions if not s.closed and s.owner is not None]
    if not subs:
        return 0
    pairs = {(s.session_key, s.owner) for s in subs}
    results = await dbthreads.run(verify, pairs)
    closed = 0
    for sub in subs:
        result = results.get((sub.session_key, sub.owner))
        if result is None:
            continue
        reason, _ = result
        if reason is not None:
            sub.close(reason)
            closed += 1
    return closed


async def check_loop(hub: Any) -> None:
    """Every ``SSE_SESSION_CHECK_INTERVAL`` seconds, :func:`check_hub`.

    A failure (a database outage) is logged once, with its traceback, and its
    end once; the checks in between log at debug level."""
    failing = False
    while True:
        await asyncio.sleep(conf.SSE_SESSION_CHECK_INTERVAL)
        try:
            await check_hub(hub)
        except Exception as exc:
            if failing:
                logger.debug("Checking the sessions of open streams still fails: %s", exc)
            else:
                logger.warning("Checking the sessions of open streams failed", exc_info=True)
            failing = True
        else:
            if failing:
                logger.info("Checking the sessions of open streams works again")
            failing = False
