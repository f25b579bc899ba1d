"""Settings of the server and publisher processes of the fault-injection suite.

The test settings, plus the knobs the scenarios turn from the environment:
retention (a prune racing a resume), the bound on a channel-layer call (Redis
stalled) and the reconnection delay sent to clients (fast resumes).
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

_FAULT_KNOBS: dict[str, type] = {
    "SSE_HISTORY_MAX_EVENTS": int,
    "SSE_HISTORY_MAX_AGE": float,
    "SSE_HISTORY_PRUNE_INTERVAL": float,
    "SSE_PUBLISH_TIMEOUT": float,
    "SSE_RETRY_MS": int,
}
for _name, _kind in _FAULT_KNOBS.items():
    if os.environ.get(_name):
        globals()[_name] = _kind(os.environ[_name])
