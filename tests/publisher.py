"""A publisher in a process of its own: ``python -m tests.publisher CHANNEL COUNT``.

Sends COUNT events ``{"n": i}`` with ``send_event`` through the layer named by
the environment (see tests/settings.py), as a worker or a shell would.
"""

from __future__ import annotations

import sys

import django


def main() -> None:
    django.setup()
    from django_sse import send_event

    channel, count = sys.argv[1], int(sys.argv[2])
    event = sys.argv[3] if len(sys.argv) > 3 else "message"
    for i in range(count):
        send_event(channel, event, {"n": i})


if __name__ == "__main__":
    main()
