from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from django_sse.admin import BroadcastMixin, NotifyUsersMixin

from .models import Ticket


@admin.register(Ticket)
class TicketAdmin(BroadcastMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "title", "customer", "status", "updated_at"]
    list_filter = ["status"]
    search_fields = ["title", "customer__username"]


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class NotifyingUserAdmin(NotifyUsersMixin, UserAdmin):  # type: ignore[type-arg]
    """The stock User admin, plus the "Send a notification" action."""
