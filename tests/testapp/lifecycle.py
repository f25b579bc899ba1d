"""Receivers of the lifecycle signals, for the tests that run real servers.

Connected when ``SSE_TEST_LIFECYCLE_LOG`` names a file: each signal appends a
JSON line to it; with ``SSE_TEST_LIFECYCLE_RAISE=1`` every receiver then
raises, as a broken audit hook would, and with ``SSE_TEST_LIFECYCLE_SLOW=N``
it first sleeps N seconds, as a webhook to a slow host would."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from django_sse.signals import stream_closed, stream_opened


def _record(kind: str, **kwargs: Any) -> None:
    time.sleep(float(os.environ.get("SSE_TEST_LIFECYCLE_SLOW", "0")))
    user = kwargs["user"]
    line = {
        "signal": kind,
        "user": user.get_username() if user.is_authenticated else None,
        "channels": list(kwargs["channels"]),
        "door": kwargs["door"],
        "reason": kwargs.get("reason"),
        "duration": kwargs.get("duration"),
        "sender": kwargs["sender"].__name__,
    }
    with open(os.environ["SSE_TEST_LIFECYCLE_LOG"], "a") as out:
        out.write(json.dumps(line) + "\n")
    if os.environ.get("SSE_TEST_LIFECYCLE_RAISE") == "1":
        raise RuntimeError(f"receiver of {kind} fails on purpose")


def on_opened(**kwargs: Any) -> None:
    _record("opened", **kwargs)


def on_closed(**kwargs: Any) -> None:
    _record("closed", **kwargs)


def connect() -> None:
    if os.environ.get("SSE_TEST_LIFECYCLE_LOG"):
        stream_opened.connect(on_opened, dispatch_uid="tests.lifecycle.opened")
        stream_closed.connect(on_closed, dispatch_uid="tests.lifecycle.closed")
