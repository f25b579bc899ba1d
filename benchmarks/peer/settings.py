"""A minimal django-eventstream project, the peer of ``benchmarks/bench.py``.

In-process listener (no Redis, no GRIP proxy). ``PEER_DB`` names an SQLite file
(migrated by the benchmark); with ``PEER_STORAGE=1`` events are stored with
``DjangoModelStorage``, as in the ``send_event`` cost row.
"""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "django_sse-benchmark-peer-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_eventstream",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "benchmarks.peer.urls"
DATABASES: dict[str, dict[str, Any]] = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PEER_DB", ":memory:"),
        # The same journal settings as the django_sse side (tests/settings.py).
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
    }
}
if "BENCH_SQLITE_INIT" in os.environ:
    DATABASES["default"]["OPTIONS"] = {"init_command": os.environ["BENCH_SQLITE_INIT"]}
if os.environ.get("PEER_STORAGE") == "1":
    EVENTSTREAM_STORAGE_CLASS = "django_eventstream.storage.DjangoModelStorage"
if os.environ.get("PEER_REDIS_URL"):
    # django-eventstream's own cross-process notification (a publisher in
    # another process reaches the server's listeners through Redis).
    from urllib.parse import urlsplit

    _redis = urlsplit(os.environ["PEER_REDIS_URL"])
    EVENTSTREAM_REDIS = {"host": _redis.hostname or "127.0.0.1", "port": _redis.port or 6379}
