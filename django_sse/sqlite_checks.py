"""System check of the event store's SQLite settings (id ``django_sse.W080``).

Every stored event is a commit. With SQLite's rollback journal every commit
waits for an fsync, and readers and the writer block each other: measured from
a view in a running server, ``send_event`` cost several times as much as with
write-ahead logging and ``synchronous=NORMAL`` (docs/benchmarks.rst). The check
opens no connection: it reads the ``init_command`` of the database's
``OPTIONS``, and the file's header, where SQLite records WAL mode once any
connection has switched the file to it (``journal_mode=WAL`` persists).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django.core.checks import CheckMessage, Tags, Warning, register
from django.db import DEFAULT_DB_ALIAS

from .conf import conf

RECOMMENDED = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
_WAL_PRAGMA = re.compile(r"journal_mode\s*=\s*['\"]?wal\b", re.IGNORECASE)
#: Bytes 18 and 19 of an SQLite file: its write and read format versions,
#: 2 for a database in WAL mode, 1 for the rollback journal.
_HEADER = b"SQLite format 3\x00"


def _store_alias() -> str | None:
    """The database the configured ``DatabaseStore`` writes to, or ``None``
    when the store is another kind (or none)."""
    from django.utils.module_loading import import_string

    from .store import DatabaseStore, get_store

    path = conf.SSE_STORE
    if path is None:
        return None
    try:
        cls = import_string(path)
    except ImportError:
        return None  # E005 says so
    if not (isinstance(cls, type) and issubclass(cls, DatabaseStore)):
        return None
    try:
        # A subclass may keep the history on another alias than 'default'.
        return str(getattr(get_store(), "using", DEFAULT_DB_ALIAS))
    except Exception:
        return DEFAULT_DB_ALIAS  # the store's own error surfaces when it is used


def in_memory(name: str) -> bool:
    return name in ("", ":memory:") or "mode=memory" in name


def file_in_wal_mode(name: str) -> bool:
    """Whether the SQLite file ``name`` exists and is in WAL mode (its header)."""
    path = Path(name.removeprefix("file:").split("?", 1)[0])
    try:
        with path.open("rb") as f:
            header = f.read(20)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return False
    return header[:16] == _HEADER and header[18:20] == b"\x02\x02"


def _vendor(engine: str) -> str:
    from django.utils.module_loading import import_string

    try:
        return str(import_string(f"{engine}.base.DatabaseWrapper").vendor)
    except (ImportError, TypeError, ValueError):  # TypeError: no ENGINE at all
        return ""  # Django reports an engine it cannot load


@register(Tags.compatibility)
def check_sqlite_wal(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.conf import settings

    alias = _store_alias()
    if alias is None:
        return []
    database = settings.DATABASES.get(alias) or {}
    if _vendor(str(database.get("ENGINE") or "")) != "sqlite":
        return []
    name = str(database.get("NAME") or "")
    init = str((database.get("OPTIONS") or {}).get("init_command") or "")
    if in_memory(name) or _WAL_PRAGMA.search(init) or file_in_wal_mode(name):
        return []
    return [
        Warning(
            f"The event store's database (DATABASES[{alias!r}]) is SQLite without "
            "write-ahead logging: every send_event() waits for an fsync and blocks "
            "the streams' reads (measured from a view: several times slower).",
            hint=(
                f"Add to DATABASES[{alias!r}]: "
                f'"OPTIONS": {{"init_command": "{RECOMMENDED}"}} '
                "(synchronous=NORMAL may lose the last commits on a power failure, "
                "not on a process crash), or run 'PRAGMA journal_mode=WAL;' on the "
                "file once (it persists). See docs/history.rst."
            ),
            id="django_sse.W080",
        )
    ]
