"""Event history for the default store (see ``store.py``)."""

from __future__ import annotations

from django.db import models


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
