"""The resume storm's publisher, in a process of its own:
``python -m benchmarks.harness.storm_publish CHANNELS RATE SECONDS``.

Publishes ``{"n": i, "channel": c}`` as event ``storm`` on every channel in
turn, ``RATE`` events per second per channel, paced against the start, until
SIGTERM or ``SECONDS`` have passed, with the library the settings name:
``django_sse.send_event`` for the test project, ``django_eventstream.send_event``
for the peer. ``n`` counts
the calls that succeeded on that channel, so the heads it prints (one JSON
line, ``{"heads": {channel: count}, "failed": k}``) are what every client must
end with. It runs while the server is killed and started again: the events of
the downtime reach the store only.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import Any

import django

STOP: list[bool] = []


def _stop(signum: int, frame: Any) -> None:
    STOP.append(True)  # the tick under way finishes; then the heads are printed


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    django.setup()
    from django.conf import settings

    if "django_eventstream" in settings.INSTALLED_APPS:
        from django_eventstream import send_event  # type: ignore[import-untyped]
    else:
        from django_sse import send_event

    channels = sys.argv[1].split(",")
    rate, seconds = float(sys.argv[2]), float(sys.argv[3])
    heads = dict.fromkeys(channels, 0)
    failed = 0
    started = time.monotonic()
    for tick in range(int(rate * seconds)):
        if STOP:
            break
        for channel in channels:
            try:
                send_event(channel, "storm", {"n": heads[channel], "channel": channel})
            except Exception as exc:  # a store or layer error: counted, not fatal
                failed += 1
                print(f"send_event failed: {exc!r}", file=sys.stderr, flush=True)
                continue
            heads[channel] += 1
        delay = started + (tick + 1) / rate - time.monotonic()
        if delay > 0 and not STOP:
            time.sleep(delay)
    print(json.dumps({"heads": heads, "failed": failed}), flush=True)


if __name__ == "__main__":
    main()
