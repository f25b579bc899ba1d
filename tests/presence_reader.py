"""``python -m tests.presence_reader CHANNEL``: ``presence(CHANNEL)`` from a
process of its own (no server, no stream), printed as JSON."""

from __future__ import annotations

import json
import sys

import django


def main() -> None:
    django.setup()
    from django_sse import presence

    found = presence(sys.argv[1])
    members = [{"key": m.key, "data": m.data} for m in found.members]
    print(
        json.dumps(
            {
                "members": members,
                "users": found.users,
                "streams": found.streams,
                "anonymous": found.anonymous,
            }
        )
    )


if __name__ == "__main__":
    main()
