"""Models the hook, admin and notification tests publish events for."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Ticket(models.Model):
    title = models.CharField(max_length=100)
    status = models.CharField(max_length=20, default="open")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    def __str__(self) -> str:
        return self.title


class Comment(models.Model):
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="comments")
    text = models.TextField()

    def __str__(self) -> str:
        return self.text[:40]


class Note(models.Model):
    """Registered by the tests themselves, with the hook options under test."""

    text = models.CharField(max_length=100)
    priority = models.IntegerField(default=0)
    extra = models.JSONField(default=dict)

    def __str__(self) -> str:
        return self.text
