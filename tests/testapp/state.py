"""In-process state the snapshot callables of the test channels read."""

from __future__ import annotations

COUNTERS: dict[str, int] = {}
