"""Refresh hooks benchmark: what a bulk edit costs, and sends, with each kind of hook.

Run from the repository root::

    .venv/bin/python benchmarks/refresh.py
    .venv/bin/python benchmarks/refresh.py --rows 5000 --rounds 5

One process, ``tests.settings`` on a fresh, migrated SQLite file (WAL) and the
in-memory layer, no subscribers. Each round saves ``--rows`` existing notes
(``tests.testapp.models.Note``) one by one in one transaction and times it
from the first save to the end of the commit (its on-commit callbacks
included), with:

* no hook;
* a ``fields=`` hook on two channels: one event per save and channel, stored;
* a refresh hook on the same two channels (``refresh=True``): one mark per
  channel and transaction, one event per channel when the window ends.

"events" counts what was published for the round (``capture_events``, which
sends the open refresh windows at its end). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def setup(db: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["SSE_TEST_DB"] = db
    os.environ["SSE_TEST_LAYER"] = "memory"
    sys.path.insert(0, str(ROOT))
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=os.environ,
        check=True,
    )
    import django

    django.setup()


def bulk_edit(rows: int) -> tuple[float, int]:
    from django.db import transaction

    from django_sse.testing import capture_events
    from tests.testapp.models import Note

    notes = list(Note.objects.all()[:rows])
    with capture_events() as sent:
        start = time.perf_counter()
        with transaction.atomic():
            for note in notes:
                note.priority += 1
                note.save()
        took = time.perf_counter() - start
    return took, len(sent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup(str(Path(tmp) / "bench.sqlite3"))
        from django_sse import hooks
        from tests.testapp.models import Note

        with hooks.silenced():
            Note.objects.bulk_create(Note(text=f"n{i}", priority=i % 2) for i in range(args.rows))
        channels = ["notes", "notes-{priority}"]
        kinds: dict[str, dict[str, Any]] = {
            "no hook": {},
            "fields hook, 2 channels": {"channels": channels, "fields": ["text", "priority"]},
            "refresh hook, 2 channels": {"channels": channels, "refresh": True},
        }
        print(f"{args.rows:,} saves in one transaction, SQLite (WAL), in-memory layer,")
        print(f"{args.rounds} rounds, median; this machine is shared, so read the ratios.\n")
        print("| hook | transaction s | per save µs | events |")
        print("|---|---:|---:|---:|")
        for kind, options in kinds.items():
            if options:
                hooks.register(Note, **options)
            results = [bulk_edit(args.rows) for _ in range(args.rounds)]
            hooks.unregister(Note)
            took = statistics.median(r[0] for r in results)
            events = statistics.median(r[1] for r in results)
            print(f"| {kind} | {took:.3f} | {took / args.rows * 1e6:.0f} | {events:,.0f} |")


if __name__ == "__main__":
    main()
