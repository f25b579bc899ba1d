from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from django_sse.admin import BroadcastMixin, NotifyUsersMixin

from .models import Ticket


@admin.register(Ticket)
class TicketAdmin(BroadcastMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "title", "customer", "status", "updated_at"]
    list_filter = ["status"]
    search_fields = ["title", "customer__username"]
    actions = ["mark_solved"]

    @admin.action(description="Mark selected tickets as solved")
    def mark_solved(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        # One transaction, and save() per ticket so the hooks see every change:
        # the lists get one refresh event each, not one per ticket.
        with transaction.atomic():
            for ticket in queryset.select_for_update():
                ticket.status = Ticket.Status.SOLVED
                ticket.save()
        self.message_user(
            request, f"{queryset.count()} ticket(s) marked as solved.", messages.SUCCESS
        )


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class NotifyingUserAdmin(NotifyUsersMixin, UserAdmin):  # type: ignore[type-arg]
    """The stock User admin, plus the "Send a notification" action."""
