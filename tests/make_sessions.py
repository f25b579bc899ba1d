"""``python -m tests.make_sessions PREFIX COUNT``: COUNT users named
PREFIX0... with a logged-in session each, made in bulk in the database the
environment names; prints one session key a line. A thousand logins through
a server would take the test a minute."""

from __future__ import annotations

import sys

import django


def main() -> None:
    django.setup()
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.db import transaction

    prefix, count = sys.argv[1], int(sys.argv[2])
    User = get_user_model()
    with transaction.atomic():
        users = User.objects.bulk_create(User(username=f"{prefix}{i}") for i in range(count))
        users = list(User.objects.filter(username__startswith=prefix).order_by("pk"))
        rows, keys = [], []
        for user in users:
            store = SessionStore()
            store.update(
                {
                    SESSION_KEY: str(user.pk),
                    BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                    HASH_SESSION_KEY: user.get_session_auth_hash(),
                }
            )
            key = store._get_new_session_key()
            rows.append(
                Session(
                    session_key=key,
                    session_data=store.encode(store._session),
                    expire_date=store.get_expiry_date(),
                )
            )
            keys.append(key)
        Session.objects.bulk_create(rows)
    print("\n".join(keys))


if __name__ == "__main__":
    main()
