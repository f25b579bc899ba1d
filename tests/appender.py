"""An appender in a process of its own: ``python -m tests.appender CHANNEL ROUNDS TAG GO``.

Waits (bounded) for the file GO to exist, so that several appenders start
together, then sends ROUNDS rounds of one ``send_event`` and one
``send_events`` batch of three, all on CHANNEL, payloads tagged with TAG.
"""

from __future__ import annotations

import os
import sys
import time

import django


def main() -> None:
    django.setup()
    from django_sse import send_event, send_events

    channel, rounds, tag, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("GO never came")
        time.sleep(0.005)
    for i in range(rounds):
        send_event(channel, "e", {"tag": tag, "n": i})
        send_events([(channel, "b", {"tag": tag, "n": i, "k": k}) for k in range(3)])


if __name__ == "__main__":
    main()
