"""A publisher in a process of its own: ``python -m tests.publisher CHANNEL COUNT``.

Sends COUNT events ``{"n": i}`` with ``send_event`` through the layer named by
the environment (see tests/settings.py), as a worker or a shell would.

Optional extras: ``CHANNEL[,CHANNEL...] COUNT [EVENT [TAG [PAD]]]``. Several
comma-separated channels get event ``i`` on each in turn; with ``TAG`` the payload
is ``{"n": i, "tag": TAG, "channel": CHANNEL}`` (so events of concurrent publishers
are told apart), plus ``"pad": "x" * PAD`` when ``PAD`` is given.
"""

from __future__ import annotations

import sys

import django


def main() -> None:
    django.setup()
    from django_sse import send_event

    channels, count = sys.argv[1].split(","), int(sys.argv[2])
    event = sys.argv[3] if len(sys.argv) > 3 else "message"
    tag = sys.argv[4] if len(sys.argv) > 4 else None
    pad = "x" * int(sys.argv[5]) if len(sys.argv) > 5 else ""
    for i in range(count):
        for channel in channels:
            if tag is None:
                send_event(channel, event, {"n": i})
            else:
                data = {"n": i, "tag": tag, "channel": channel}
                if pad:
                    data["pad"] = pad
                send_event(channel, event, data)


if __name__ == "__main__":
    main()
