from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse


class Ticket(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PENDING = "pending", "Waiting for you"
        SOLVED = "solved", "Solved"

    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tickets"
    )
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    reply = models.TextField("latest reply from support", blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("helpdesk:detail", args=[self.pk])

    def visible_to(self, user: Any) -> bool:
        return bool(user.is_authenticated and (user.is_staff or user.pk == self.customer_id))
