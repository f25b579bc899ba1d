"""The test project's admin: the User admin re-registered with NotifyUsersMixin."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from django_sse.admin import BroadcastMixin, NotifyUsersMixin
from tests.testapp.models import Note, Ticket

User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class NotifyingUserAdmin(NotifyUsersMixin, UserAdmin):
    pass


@admin.register(Ticket)
class TicketAdmin(BroadcastMixin, admin.ModelAdmin):
    list_display = ["title", "status"]


@admin.register(Note)
class NoteAdmin(BroadcastMixin, admin.ModelAdmin):
    pass
