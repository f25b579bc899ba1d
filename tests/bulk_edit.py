"""A bulk edit under refresh hooks: ``python -m tests.bulk_edit KEY COUNT MODE``.

With ``SSE_TEST_REFRESH_HOOKS=1`` (tests/testapp/sse.py), notes refresh
channels ``notes:KEY`` and ``notes:KEY-<priority>`` (priorities 0, 1, 2).
Creates COUNT notes with hooks silenced, then edits them all in one
transaction. MODE says what the process does next: ``wait`` until the
debounce windows have closed, ``exit`` at once (``atexit`` sends them),
``rollback`` the edit instead, or ``kill`` itself with SIGKILL. Prints how many
windows were open after the commit and how long the edit took, as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import django

PRIORITIES = 3


def channels(key: str) -> list[str]:
    return [f"notes:{key}", *(f"notes:{key}-{p}" for p in range(PRIORITIES))]


def edit(key: str, count: int, *, rollback: bool = False) -> float:
    """Create ``count`` notes quietly, then save each in one transaction; the seconds taken."""
    from django.db import transaction

    from django_sse import hooks
    from tests.testapp.models import Note

    with hooks.silenced():
        Note.objects.bulk_create(Note(text=key, priority=n % PRIORITIES) for n in range(count))
    start = time.monotonic()
    try:
        with transaction.atomic():
            for note in Note.objects.filter(text=key):
                note.extra = {"edited": True}
                note.save()
            if rollback:
                raise RuntimeError("rolled back")
    except RuntimeError:
        if not rollback:
            raise
    return time.monotonic() - start


def main() -> None:
    django.setup()
    from django_sse import debounce

    key, count, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    took = edit(key, count, rollback=mode == "rollback")
    pending = debounce.debouncer().pending()
    print(json.dumps({"pending": pending, "edit_seconds": took}), flush=True)
    if mode == "wait":
        deadline = time.monotonic() + 30
        while debounce.debouncer().pending() and time.monotonic() < deadline:
            time.sleep(0.01)
    elif mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
