"""Model hooks: send an event when an instance of a registered model changes.

Register models in ``<app>/sse.py``, beside the channels::

    from django_sse import hooks

    hooks.register(Ticket, channels="ticket:{pk}", fields=["title", "status"])

    @hooks.register(Comment, channels=["ticket:{ticket_id}", "comments"])
    def comment_payload(comment, action):
        return {"text": comment.text}

Events go out when the transaction commits, one per save or delete, and never
on rollback. A hook sends only what it names: ``fields=`` (or ``"__all__"``),
``serializer=``, ``payload=`` or a decorated function; never every column by
default, so a password hash cannot leak through a forgotten option.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import re
import string
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models, transaction
from django.db.models.signals import post_delete, post_init, post_save, pre_delete

from .events import Event, is_reserved_event_name, validate_event_name
from .publish_batch import _build_all, send_built
from .refresh import REFRESH_ACTION, check_refresh, refresh_hook

logger = logging.getLogger("django_sse")

__all__ = [
    "ACTIONS",
    "ALL_FIELDS",
    "Hook",
    "hooks_for",
    "register",
    "send_for",
    "silenced",
    "unregister",
]

ACTIONS = ("created", "updated", "deleted")
#: ``fields=ALL_FIELDS`` sends every concrete field, as DRF's ModelSerializer.
ALL_FIELDS: Literal["__all__"] = "__all__"

ChannelsType: TypeAlias = str | Sequence[str] | Callable[[Any], str | Sequence[str]]
PayloadCallable: TypeAlias = Callable[[Any, str], Any]

# The field values an instance was loaded or last saved with (for changed_only),
# as committed; and the saves of open transactions, not yet committed.
_LOADED = "_django_sse_loaded"
_PENDING = "_django_sse_pending"
_silenced: contextvars.ContextVar[tuple[type[models.Model], ...] | None] = contextvars.ContextVar(
    "django_sse_silenced", default=None
)


class _Attributes(dict[str, Any]):
    """Lets ``"ticket:{pk}".format_map()`` read any attribute of the instance."""

    def __init__(self, instance: models.Model) -> None:
        super().__init__()
        self.instance = instance

    def __missing__(self, key: str) -> Any:
        return getattr(self.instance, key)


def placeholders(template: str) -> list[str]:
    """The attributes a channel template reads: ``owner`` for ``{owner.username}``."""
    names = (name for _, name, _, _ in string.Formatter().parse(template) if name)
    return [re.split(r"[.\[]", name, maxsplit=1)[0] for name in names]


@dataclass
class Hook:
    """How the events of one model are named, addressed and filled."""

    model: type[models.Model]
    channels: ChannelsType
    actions: tuple[str, ...] = ACTIONS
    fields: tuple[str, ...] | Literal["__all__"] | None = None
    serializer: type[Any] | None = None
    payload: PayloadCallable | None = None
    changed_only: bool = False
    event: str | None = None
    #: Seconds of a refresh hook's debounce window (``True``: the setting); see
    #: :mod:`django_sse.refresh`.
    refresh: float | bool = False

    def __call__(self, func: PayloadCallable) -> PayloadCallable:
        """Use the hook as a decorator: ``func(instance, action)`` makes the payload."""
        if self.refresh:
            raise TypeError(f"hook for {self.model._meta.label}: a refresh hook sends no payload")
        if self.fields is not None or self.serializer is not None or self.payload is not None:
            raise TypeError(
                f"hook for {self.model._meta.label}: the payload is already given by "
                "fields=, serializer= or payload="
            )
        self.payload = func
        return func

    def event_name(self, action: str) -> str:
        opts = self.model._meta
        if self.refresh:
            action = REFRESH_ACTION  # one event for every action
        if self.event is None:
            return f"{opts.app_label}.{opts.model_name}.{action}"
        return self.event.format(action=action, app_label=opts.app_label, model=opts.model_name)

    def channel_names(self, instance: models.Model) -> list[str]:
        if callable(self.channels):
            names = self.channels(instance)
            return [names] if isinstance(names, str) else list(names)
        templates = [self.channels] if isinstance(self.channels, str) else self.channels
        values = _Attributes(instance)
        return [template.format_map(values) for template in templates]

    @property
    def names_its_payload(self) -> bool:
        return (
            bool(self.refresh)
            or self.fields is not None
            or self.serializer is not None
            or self.payload is not None
        )

    def data(self, instance: models.Model, action: str) -> Any:
        if self.payload is not None:
            data = self.payload(instance, action)
        elif self.serializer is not None:
            data = dict(self.serializer(instance).data)
        else:
            data = {name: _value(instance, name) for name in self.field_names()}
        if isinstance(data, dict):
            data = {"pk": instance.pk, **data}
        return data

    def field_names(self) -> tuple[str, ...]:
        """The fields the payload holds (``fields=`` hooks only)."""
        if self.fields is None:
            raise ImproperlyConfigured(
                f"The hook of {self.model._meta.label} names no payload, so it sends "
                f"nothing: give fields=[...] (or {ALL_FIELDS!r}), serializer= or payload=, "
                "or decorate a payload function."
            )
        if isinstance(self.fields, str):  # ALL_FIELDS
            return tuple(f.name for f in self.model._meta.concrete_fields)
        return self.fields


def _value(instance: models.Model, name: str) -> Any:
    try:
        f = instance._meta.get_field(name)
    except FieldDoesNotExist:
        return getattr(instance, name)  # a property or other attribute
    if f.concrete and not f.many_to_many:
        return f.value_from_object(instance)
    return getattr(instance, name)


def _snapshot(instance: models.Model) -> dict[str, Any]:
    # Only what is loaded: reading a deferred field here would cost a query.
    loaded = instance.__dict__
    return {
        f.attname: copy.deepcopy(loaded[f.attname])
        for f in instance._meta.concrete_fields
        if f.attname in loaded
    }


def _changes(
    instance: models.Model, update_fields: Iterable[str] | None
) -> tuple[set[str], dict[str, Any]]:
    """The names (and attnames) of the fields a save changed, and the values to
    compare the next save with. With ``update_fields``, only those were saved."""
    before = _compared_with(instance)
    now = _snapshot(instance)
    saved = None if update_fields is None else set(update_fields)
    changed: set[str] = set()
    after = dict(before)
    for f in instance._meta.concrete_fields:
        if f.attname not in now or (saved is not None and not {f.name, f.attname} & saved):
            continue
        after[f.attname] = now[f.attname]
        if f.attname not in before or before[f.attname] != now[f.attname]:
            changed.update((f.name, f.attname))
    return changed, after


class Registry:
    def __init__(self) -> None:
        self._hooks: dict[type[models.Model], list[Hook]] = {}

    def register(
        self,
        model: type[models.Model],
        *,
        channels: ChannelsType,
        actions: Iterable[str] = ACTIONS,
        fields: Iterable[str] | None = None,
        serializer: type[Any] | None = None,
        payload: PayloadCallable | None = None,
        changed_only: bool = False,
        event: str | None = None,
        refresh: bool | float = False,
    ) -> Hook:
        """Send events for ``model``; see :doc:`/model-events`.

        Returns the :class:`Hook`, which also decorates a payload function."""
        if not (isinstance(model, type) and issubclass(model, models.Model)):
            raise TypeError(f"hooks.register() needs a model class, got {model!r}")
        label = model._meta.label
        actions = tuple(actions)
        unknown = [a for a in actions if a not in ACTIONS]
        if not actions or unknown:
            raise ValueError(f"hook for {label}: actions must be some of {ACTIONS}, got {actions}")
        given = [n for n, v in (("fields", fields), ("serializer", serializer)) if v is not None]
        if payload is not None:
            given.append("payload")
        if len(given) > 1:
            raise TypeError(f"hook for {label}: give only one of {', '.join(given)}")
        check_refresh(label, refresh, given)
        if isinstance(fields, str) and fields != ALL_FIELDS:
            raise TypeError(
                f"hook for {label}: fields must be a list of names or {ALL_FIELDS!r}, "
                f"not the str {fields!r}"
            )
        if event is not None:
            _check_event(label, event, (REFRESH_ACTION,) if refresh else actions)
        if not (callable(channels) or isinstance(channels, str) or list(channels)):
            raise ValueError(f"hook for {label}: channels is empty")
        if not isinstance(channels, str) and not callable(channels):
            channels = tuple(channels)
        hook = Hook(
            model,
            channels,
            actions,
            _fields(fields),
            serializer,
            payload,
            bool(changed_only),
            event,
            refresh,
        )
        hooks = self._hooks.setdefault(model, [])
        uid = f"django_sse.hooks.{model._meta.label}"
        if not hooks:
            post_save.connect(_on_save, sender=model, dispatch_uid=uid, weak=False)
            pre_delete.connect(_before_delete, sender=model, dispatch_uid=uid, weak=False)
            post_delete.connect(_on_delete, sender=model, dispatch_uid=uid, weak=False)
        if hook.changed_only:
            # Only changed-only hooks need the values each instance was loaded
            # with; other models pay nothing per instance the ORM builds.
            post_init.connect(_on_init, sender=model, dispatch_uid=uid, weak=False)
        hooks.append(hook)
        return hook

    def unregister(self, model: type[models.Model]) -> None:
        """Forget every hook of ``model``."""
        if self._hooks.pop(model, None) is not None:
            uid = f"django_sse.hooks.{model._meta.label}"
            for signal in (post_init, post_save, pre_delete, post_delete):
                signal.disconnect(sender=model, dispatch_uid=uid)

    def hooks_for(self, model: type[models.Model]) -> list[Hook]:
        return list(self._hooks.get(model, ()))

    def __iter__(self) -> Iterator[Hook]:
        return iter([h for hooks in self._hooks.values() for h in hooks])


def _fields(fields: Iterable[str] | None) -> tuple[str, ...] | Literal["__all__"] | None:
    if fields is None:
        return None
    if isinstance(fields, str):
        return ALL_FIELDS  # register() refuses any other str
    return tuple(fields)


def _check_event(label: str, event: object, actions: tuple[str, ...]) -> None:
    if not isinstance(event, str):
        raise TypeError(f"hook for {label}: event must be a str, got {event!r}")
    app_label, _, model = label.partition(".")
    for action in actions:
        try:
            name = event.format(action=action, app_label=app_label, model=model.lower())
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"hook for {label}: event {event!r} may use only {{action}}, {{app_label}} "
                f"and {{model}} ({exc!r})"
            ) from None
        if is_reserved_event_name(name):
            raise ValueError(
                f"hook for {label}: event name {name!r} is reserved for the server "
                "(snapshot and every name starting with 'stream-')"
            )
        try:
            validate_event_name(label, name)
        except ValueError as exc:
            raise ValueError(f"hook for {label}: {exc}") from None


registry = Registry()
register = registry.register
unregister = registry.unregister
hooks_for = registry.hooks_for


def _on_init(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    instance.__dict__[_LOADED] = _snapshot(instance)


class _Promote:
    """Makes a save's values the ones the next save compares with, on commit.

    Until then they hold only while the save's transaction (or savepoint) is
    open: after a rollback the database still has the old values, and so
    must the comparison."""

    def __init__(self, instance: models.Model, after: dict[str, Any], using: str) -> None:
        self.instance, self.after, self.using = instance, after, using

    def __call__(self) -> None:
        state = self.instance.__dict__
        state[_LOADED] = self.after
        pending = state.get(_PENDING, [])
        if self in pending:
            del pending[: pending.index(self) + 1]

    def alive(self) -> bool:
        # Django drops the on-commit callbacks of a rolled back block.
        connection = transaction.get_connection(self.using)
        return any(entry[1] is self for entry in connection.run_on_commit)


def _compared_with(instance: models.Model) -> dict[str, Any]:
    """The values the instance's next save is compared with."""
    pending: list[_Promote] = instance.__dict__.get(_PENDING, [])
    while pending and not pending[-1].alive():
        pending.pop()
    if pending:
        return pending[-1].after
    loaded: dict[str, Any] = instance.__dict__.get(_LOADED, {})
    return loaded


def _remember(instance: models.Model, after: dict[str, Any], using: str | None) -> None:
    alias = using or instance._state.db or "default"
    if not transaction.get_connection(alias).in_atomic_block:
        instance.__dict__[_LOADED] = after
        instance.__dict__.pop(_PENDING, None)
        return
    promote = _Promote(instance, after, alias)
    instance.__dict__.setdefault(_PENDING, []).append(promote)
    transaction.on_commit(promote, using=alias)


def _on_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    raw: bool = False,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    if raw:
        return  # loaddata: fixtures are not changes anyone watches
    action = "created" if created else "updated"
    changed = None
    if any(h.changed_only for h in registry.hooks_for(sender)):
        changed, after = _changes(instance, None if created else kwargs.get("update_fields"))
        _remember(instance, after, using)  # what the next save compares with
        if created:
            changed = None  # a new instance is sent whole
    if not _is_silenced(sender):
        _send(sender, instance, action, using, changed)


def _before_delete(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    # A deferred field read after the row is gone would fail (and with DEBUG,
    # roll the delete back): load them while the row still exists.
    deferred = instance.get_deferred_fields()
    if deferred and any("deleted" in h.actions for h in registry.hooks_for(sender)):
        try:
            instance.refresh_from_db(fields=list(deferred))
        except sender.DoesNotExist:  # type: ignore[attr-defined]
            pass  # a stale instance: the delete itself must still run


def _on_delete(
    sender: type[models.Model], instance: models.Model, using: str | None = None, **kwargs: Any
) -> None:
    if not _is_silenced(sender):
        _send(sender, instance, "deleted", using, None)


def _is_silenced(model: type[models.Model]) -> bool:
    models_ = _silenced.get()
    return models_ is not None and (not models_ or issubclass(model, models_))


def _send(
    model: type[models.Model],
    instance: models.Model,
    action: str,
    using: str | None,
    changed: set[str] | None,
) -> list[Event]:
    """The hook events of one save or delete, sent as one batch: stored in one
    transaction, on commit inside ``atomic()``."""
    built = _build(model, instance, action, using, changed)
    try:
        return send_built(built, using=using)
    except Exception:
        if settings.DEBUG:
            raise
        logger.exception(
            "Hooks of %s could not send their %r events for pk=%r",
            model._meta.label,
            action,
            instance.pk,
        )
        return []


def _build(
    model: type[models.Model],
    instance: models.Model,
    action: str,
    using: str | None,
    changed: set[str] | None,
    *,
    loud: bool = False,
) -> list[Event]:
    """The validated, unsent events of ``model``'s hooks for ``instance``
    (refresh hooks mark their channels here)."""
    built: list[Event] = []
    for hook in registry.hooks_for(model):
        if action not in hook.actions:
            continue
        try:
            if hook.refresh:
                # Nothing of the row: one event stands for a burst of changes.
                if not (hook.changed_only and changed is not None and not changed):
                    refresh_hook(hook, instance, using)
                continue
            data = hook.data(instance, action)
            if hook.changed_only and changed is not None and isinstance(data, dict):
                if not changed:
                    continue  # saved without a change
                data = {k: v for k, v in data.items() if k == "pk" or k in changed}
            name = hook.event_name(action)
            # Validated per hook: one broken hook does not cost the others.
            built.extend(_build_all([(c, name, data) for c in hook.channel_names(instance)]))
        except Exception:
            # Loud while developing; in production a broken hook must not break the save.
            if loud or settings.DEBUG:
                raise
            logger.exception(
                "Hook of %s could not send %r for pk=%r; no event was sent",
                model._meta.label,
                action,
                instance.pk,
            )
    return built


def send_for(
    instances: Iterable[models.Model], action: str = "updated", *, using: str | None = None
) -> list[Event]:
    """Send the hook events of ``instances`` (a queryset or any iterable) as ``action``.

    For changes that send no signals: ``QuerySet.update()`` and
    ``bulk_create()``. Sends the full payload, also for ``changed_only`` hooks,
    and sends even inside :func:`silenced`. Errors raise, and then nothing is
    sent. The events are stored in one transaction per database (on commit
    inside ``atomic()``) and published together. Returns the events."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    if isinstance(instances, models.QuerySet):
        using = using or instances.db
    by_alias: dict[str | None, list[Event]] = {}
    for instance in instances:
        alias = using or instance._state.db
        by_alias.setdefault(alias, []).extend(
            _build(type(instance), instance, action, alias, None, loud=True)
        )
    sent: list[Event] = []
    for alias, built in by_alias.items():
        sent.extend(send_built(built, using=alias))
    return sent


@contextmanager
def silenced(*models_: type[models.Model]) -> Iterator[None]:
    """Send no hook events inside the block (of ``models_`` only, if given).

    Local to the thread or task. Also a decorator: ``@hooks.silenced()``."""
    outer = _silenced.get()
    if outer is not None and (not outer or not models_):
        scope: tuple[type[models.Model], ...] = ()
    else:
        scope = (outer or ()) + models_
    token = _silenced.set(scope)
    try:
        yield
    finally:
        _silenced.reset(token)
