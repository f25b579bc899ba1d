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
        permissions = [("publish_event", "Can publish events")]
        constraints = [
            models.UniqueConstraint(fields=["channel", "seq"], name="django_sse_channel_seq")
        ]

    def __str__(self) -> str:
        return f"{self.channel}#{self.seq} {self.name}"


class StreamToken(models.Model):
    """A stream token that has been used, kept until it expires so it is used once.

    A database row, so that every server process sees it, on any deployment."""

    nonce = models.CharField(max_length=32, primary_key=True)
    expires = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "used stream token"

    def __str__(self) -> str:
        return f"used token until {self.expires:%Y-%m-%d %H:%M:%S}"
