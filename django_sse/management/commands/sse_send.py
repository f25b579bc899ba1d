"""``manage.py sse_send CHANNEL EVENT DATA``: publish one event from a shell or script."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_sse.publish import send_event


class Command(BaseCommand):
    help = (
        "Publish one event. DATA is JSON (or '-' to read it from stdin); with --text "
        "it is sent verbatim. CHANNEL must match a registered channel pattern."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def error(message: str) -> NoReturn:
            # One line and status 1, like every other refusal of this command
            # (argparse prints its usage and exits 2).
            if not parser.called_from_command_line:
                raise CommandError(f"Error: {message}")
            shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)
            parser.exit(1, f"CommandError: {shown} (see 'sse_send --help')\n")

        parser.error = error  # type: ignore[method-assign]
        return parser

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
            try:
                # Drop the newline that ends what echo and most commands print.
                raw = sys.stdin.read().removesuffix("\n")
            except UnicodeDecodeError as exc:
                raise CommandError(f"DATA on stdin is not valid text ({exc.reason})") from None
            try:
                # Under a C/POSIX locale stdin decodes with surrogateescape:
                # undecodable bytes arrive as lone surrogates, not as an error.
                raw.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise CommandError(f"DATA on stdin is not valid text ({exc.reason})") from None
        data: Any = raw
        if not options["text"]:
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise CommandError(
                    f"DATA is not valid JSON ({exc}); use --text to send text"
                ) from None
            except (ValueError, RecursionError) as exc:  # too many digits, too deep
                raise CommandError(f"DATA cannot be read as JSON ({exc})") from None
        try:
            event = send_event(options["channel"], options["event"], data)
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc).replace("\n", " ")) from None
        seq = "" if event.seq is None else f" as #{event.seq}"
        self.stdout.write(f"Sent {event.name!r} on {event.channel!r}{seq}.")
