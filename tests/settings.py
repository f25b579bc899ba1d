"""Settings for the test suite and for the server processes the tests start.

Server processes read their layer and database from the environment:
``SSE_TEST_LAYER`` (``memory`` or ``redis``), ``REDIS_URL``, ``SSE_TEST_DB``
(an SQLite file shared with the test process), ``SSE_KEEPALIVE``,
``SSE_HISTORY_POLL``, ``SSE_QUEUE_SIZE``, ``SSE_MAX_STREAMS_PER_USER``,
``SSE_MAX_STREAMS_PER_ADDRESS``, ``SSE_CLIENT_IP_HEADER``, ``SSE_PUBLISH_TIMEOUT``,
``SSE_MAX_STREAM_AGE``, ``SSE_TOKEN_MAX_AGE``, ``SESSION_COOKIE_AGE``,
``SSE_REFRESH_DEBOUNCE``, ``SSE_PRESENCE_HEARTBEAT`` and
``SSE_PRESENCE_TIMEOUT``; ``SSE_TEST_METRICS=1`` turns the metrics on,
``SSE_TEST_LIFECYCLE_LOG`` (a file) connects lifecycle signal receivers
(tests/testapp/lifecycle.py).
"""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "django_sse-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "rest_framework.authtoken",
    "django_sse",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.middleware.gzip.GZipMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
if os.environ.get("SSE_TEST_NO_CSRF_MIDDLEWARE") == "1":
    # A project that dropped Django's CSRF middleware: the admin's views still check.
    MIDDLEWARE.remove("django.middleware.csrf.CsrfViewMiddleware")
ROOT_URLCONF = "tests.urls"
ASGI_APPLICATION = "tests.asgi.application"
STATIC_URL = "/static/"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES: dict[str, dict[str, Any]]
if os.environ.get("SSE_TEST_DB"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["SSE_TEST_DB"],
            # Several server processes share this file: WAL lets readers and the
            # writer overlap, and NORMAL skips an fsync per commit (docs/history.rst).
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        }
    }
elif os.environ.get("SSE_TEST_POSTGRES"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("SSE_TEST_POSTGRES_DB", "postgres"),
            "HOST": "127.0.0.1",
            "PORT": 5432,
            "USER": os.environ.get("SSE_TEST_POSTGRES_USER", "postgres"),
        }
    }
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

if os.environ.get("SSE_TEST_LAYER") == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [os.environ["REDIS_URL"]]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The suite and the benchmarks open thousands of anonymous streams from
# 127.0.0.1; tests of the per-address limit set it through the environment.
SSE_MAX_STREAMS_PER_ADDRESS = None

# Settings a server process takes from its environment.
_FROM_ENV: dict[str, type] = {
    "SSE_MAX_STREAMS_PER_ADDRESS": int,
    "SSE_CLIENT_IP_HEADER": str,
    "SSE_PUBLISH_TIMEOUT": float,
    "SSE_KEEPALIVE": float,
    "SSE_RETRY_MS": int,
    "SSE_HISTORY_POLL": float,
    "SSE_QUEUE_SIZE": int,
    "SSE_MAX_STREAMS_PER_USER": int,
    "SSE_MAX_STREAM_AGE": float,
    "SSE_TOKEN_MAX_AGE": float,
    "SESSION_COOKIE_AGE": int,
    "SSE_REFRESH_DEBOUNCE": float,
    "SSE_PRESENCE_HEARTBEAT": float,
    "SSE_PRESENCE_TIMEOUT": float,
}
for _name, _kind in _FROM_ENV.items():
    if os.environ.get(_name):
        globals()[_name] = _kind(os.environ[_name])

# Prometheus metrics (docs/operations.rst), for the servers that test them.
SSE_METRICS = os.environ.get("SSE_TEST_METRICS") == "1"

SSE_AUTHENTICATION_CLASSES = [
    "django_sse.auth.SessionAuthentication",
    "rest_framework.authentication.TokenAuthentication",
]
SSE_CORS_ALLOWED_ORIGINS = ["http://allowed.example", *os.environ.get("SSE_TEST_CORS", "").split()]

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_sse": {"handlers": ["console"], "level": "INFO"}},
}

if os.environ.get("SSE_TEST_ACCESS_LOG"):
    # The recipe of docs/authentication.rst, on uvicorn's own access formatter.
    LOGGING["filters"] = {"sse_tokens": {"()": "django_sse.logs.RedactTokens"}}
    LOGGING["formatters"] = {
        "access": {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": '%(client_addr)s - "%(request_line)s" %(status_code)s',
        }
    }
    LOGGING["handlers"]["access"] = {
        "class": "logging.StreamHandler",
        "filters": ["sse_tokens"],
        "formatter": "access",
    }
    LOGGING["loggers"]["uvicorn.access"] = {
        "handlers": ["access"],
        "level": "INFO",
        "propagate": False,
    }
