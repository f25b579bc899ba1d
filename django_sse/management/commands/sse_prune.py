"""``manage.py sse_prune``: apply the history and inbox retention settings now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_sse.conf import conf
from django_sse.store import get_store


class Command(BaseCommand):
    help = (
        "Delete stored events older than SSE_HISTORY_MAX_AGE seconds or beyond the last "
        "SSE_HISTORY_MAX_EVENTS of their channel, and inbox items older than "
        "SSE_INBOX_MAX_AGE or beyond the newest SSE_INBOX_MAX_ITEMS of their user, in bulk."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        from django_sse.inbox import prune as prune_inbox

        items = prune_inbox()
        self.stdout.write(
            f"Removed {items} inbox item(s) (keeping at most {conf.SSE_INBOX_MAX_ITEMS} "
            f"per user, {conf.SSE_INBOX_MAX_AGE}s old)."
        )
        store = get_store()
        if store is None:
            raise CommandError("SSE_STORE is None: there is no history to prune")
        removed = store.prune()
        self.stdout.write(
            f"Removed {removed} stored event(s) (keeping at most "
            f"{conf.SSE_HISTORY_MAX_EVENTS} per channel, {conf.SSE_HISTORY_MAX_AGE:g}s old)."
        )
