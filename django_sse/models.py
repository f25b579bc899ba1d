"""Event history for the default store (see ``store.py``), stream tokens and the inbox."""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class ChannelSequence(models.Model):
    """The last sequence number given out on a channel.

    Incrementing it takes a row lock held until commit, so on any database the
    events of one channel commit in sequence order: a client that saw event
    ``n`` can never later find an event ``< n`` appearing behind it."""

    channel = models.CharField(max_length=100, primary_key=True)
    last_seq = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "channel sequence"

    def __str__(self) -> str:
        return f"{self.channel} @ {self.last_seq}"


class StoredEvent(models.Model):
    """One published event, kept for replay until retention removes it."""

    id = models.BigAutoField(primary_key=True)
    channel = models.CharField(max_length=100)
    seq = models.BigIntegerField()
    name = models.CharField(max_length=200)
    payload = models.TextField()
    created = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "stored event"
        # Guards the REST publish endpoint (django_sse.api).
        permissions = [
            ("publish_event", "Can publish events"),
            ("view_live", "Can view the live streams page"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["channel", "seq"], name="django_sse_channel_seq")
        ]

    def __str__(self) -> str:
        return f"{self.channel}#{self.seq} {self.name}"


class StreamToken(models.Model):
    """A stream token given out by the token endpoint, kept until it expires.

    A database row, so that every server process sees it: a token is usable
    once (``used``), and only while the session that asked for it lasts."""

    nonce = models.CharField(max_length=32, primary_key=True)
    expires = models.DateTimeField(db_index=True)
    #: The key of the session that asked for the token (empty: another
    #: credential). Kept here, never in the token, which is signed, not secret.
    session_key = models.CharField(max_length=255, blank=True, default="")
    used = models.BooleanField(default=False)

    class Meta:
        verbose_name = "stream token"

    def __str__(self) -> str:
        state = "used" if self.used else "unused"
        return f"{state} token until {self.expires:%Y-%m-%d %H:%M:%S}"


class SessionRotation(models.Model):
    """A session whose key ``cycle_key()`` replaced (``login()``,
    ``update_session_auth_hash()``): its open streams close with "session
    changed" (the client reconnects) instead of "session ended". Kept for a
    few minutes."""

    #: A keyed hash of the replaced key.
    old = models.CharField(max_length=64, primary_key=True)
    new_key = models.CharField(max_length=255)
    created = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "rotated session"

    def __str__(self) -> str:
        return f"session rotated at {self.created:%Y-%m-%d %H:%M:%S}"


class InboxItem(models.Model):
    """A notification kept in its recipient's inbox until read, deleted or pruned.

    Written by :func:`django_sse.notify`; read and changed through
    :mod:`django_sse.inbox`, which publishes every change, with the new
    unread count, on the recipient's private channel."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: the two below start with the recipient.
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="sse_inbox",
        db_index=False,
    )
    message = models.TextField()
    level = models.CharField(max_length=20, default="info")
    url = models.CharField(max_length=2000, blank=True, default="")
    actor_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    actor_id = models.CharField(max_length=255, blank=True, default="")
    actor = GenericForeignKey("actor_type", "actor_id")
    target_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    target_id = models.CharField(max_length=255, blank=True, default="")
    target = GenericForeignKey("target_type", "target_id")
    data = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    created = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "inbox item"
        ordering = ["-id"]
        indexes = [
            # The list, newest first.
            models.Index(fields=["recipient", "-id"], name="django_sse_inbox_recent"),
            # The unread count and "unread, newest first": only unread rows,
            # so the index stays small however many read items are kept.
            models.Index(
                fields=["recipient", "-id"],
                name="django_sse_inbox_unread",
                condition=models.Q(read_at__isnull=True),
            ),
            # Pruning by age.
            models.Index(fields=["created"], name="django_sse_inbox_created"),
        ]

    def __str__(self) -> str:
        return f"{self.message[:60]} → {self.recipient_id}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from .notifications import validate_notification_url

        if self.url:
            try:
                validate_notification_url(self.url)
            except (TypeError, ValueError) as exc:
                raise ValidationError({"url": str(exc)}) from None
