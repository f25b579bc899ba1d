"""A publisher process of the fault suite: ``python -m tests.faults.publisher``.

Arguments: ``CHANNEL[,CHANNEL...] COUNT TAG [PAD [PAUSE]]``. Event ``i`` goes to
each channel in turn, as ``{"n": i, "tag": TAG, "channel": CHANNEL}`` (plus
``"pad"`` of PAD bytes), PAUSE seconds apart. A call that fails on a database
error is retried once on a fresh connection, as an application's task would be.
The last line of output is a JSON summary: how many calls succeeded and failed,
and the slowest call in seconds, so a scenario can tell "slow" from "hung".
"""

from __future__ import annotations

import json
import sys
import time

import django


def main() -> None:
    django.setup()
    from django.db import close_old_connections, connection
    from django.db.utils import InterfaceError, OperationalError

    from django_sse import send_event

    channels, count, tag = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3]
    pad = "x" * int(sys.argv[4]) if len(sys.argv) > 4 else ""
    pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    sent = failed = 0
    slowest = 0.0
    for i in range(count):
        for channel in channels:
            data = {"n": i, "tag": tag, "channel": channel}
            if pad:
                data["pad"] = pad
            for attempt in range(2):
                started = time.monotonic()
                try:
                    send_event(channel, "fault", data)
                except (InterfaceError, OperationalError) as exc:
                    failed += 1
                    print(f"send_event failed ({attempt}): {exc!r}".strip(), flush=True)
                    connection.close()
                    close_old_connections()
                    continue
                finally:
                    slowest = max(slowest, time.monotonic() - started)
                sent += 1
                break
        if pause:
            time.sleep(pause)
    print(json.dumps({"sent": sent, "failed": failed, "slowest": round(slowest, 3)}), flush=True)


if __name__ == "__main__":
    main()
