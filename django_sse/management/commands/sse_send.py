"""``manage.py sse_send CHANNEL EVENT DATA``: publish one event from a shell or script."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_sse.publish import send_event


class Command(BaseCommand):
    help = (
        "Publish one event. DATA is JSON (or '-' to read it from stdin); with --text "
        "it is sent verbatim."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("channel")
        parser.add_argument("event")
        parser.add_argument("data", help="JSON, or '-' to read stdin")
        parser.add_argument(
            "--text", action="store_true", help="send DATA as text (an HTML fragment), not JSON"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        raw: str = options["data"]
        if raw == "-":
            # Drop the newline that ends what echo and most commands print.
            raw = sys.stdin.read().removesuffix("\n")
        data: Any = raw
        if not options["text"]:
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise CommandError(
                    f"DATA is not valid JSON ({exc}); use --text to send text"
                ) from None
        try:
            event = send_event(options["channel"], options["event"], data)
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc).replace("\n", " ")) from None
        seq = "" if event.seq is None else f" as #{event.seq}"
        self.stdout.write(f"Sent {event.name!r} on {event.channel!r}{seq}.")
