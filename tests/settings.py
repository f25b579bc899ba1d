"""Settings for the test suite and for the server processes the tests start.

Server processes read their layer and database from the environment:
``SSE_TEST_LAYER`` (``memory`` or ``redis``), ``REDIS_URL``, ``SSE_TEST_DB``
(an SQLite file shared with the test process), ``SSE_KEEPALIVE``,
``SSE_HISTORY_POLL``, ``SSE_QUEUE_SIZE``, ``SSE_MAX_STREAMS_PER_USER`` and
``SSE_MAX_STREAM_AGE``.
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

if os.environ.get("SSE_KEEPALIVE"):
    SSE_KEEPALIVE = float(os.environ["SSE_KEEPALIVE"])
if os.environ.get("SSE_HISTORY_POLL"):
    SSE_HISTORY_POLL = float(os.environ["SSE_HISTORY_POLL"])
if os.environ.get("SSE_QUEUE_SIZE"):
    SSE_QUEUE_SIZE = int(os.environ["SSE_QUEUE_SIZE"])
if os.environ.get("SSE_MAX_STREAMS_PER_USER"):
    SSE_MAX_STREAMS_PER_USER = int(os.environ["SSE_MAX_STREAMS_PER_USER"])
if os.environ.get("SSE_MAX_STREAM_AGE"):
    SSE_MAX_STREAM_AGE = float(os.environ["SSE_MAX_STREAM_AGE"])

SSE_AUTHENTICATION_CLASSES = [
    "django_sse.auth.SessionAuthentication",
    "rest_framework.authentication.TokenAuthentication",
]
#: A foreign origin allowed to open streams; every other one is refused.
#: ``SSE_TEST_CORS_ORIGINS`` (comma-separated) adds more, for browser tests.
SSE_CORS_ALLOWED_ORIGINS = ["https://app.example.test"] + [
    o for o in os.environ.get("SSE_TEST_CORS_ORIGINS", "").split(",") if o
]

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_sse": {"handlers": ["console"], "level": "INFO"}},
}

if os.environ.get("SSE_TEST_ACCESS_LOG"):
    # The recipe of docs/security.rst: uvicorn's access log without stream tokens.
    LOGGING["filters"] = {"sse_tokens": {"()": "django_sse.logs.RedactStreamTokens"}}
    LOGGING["handlers"]["access"] = {"class": "logging.StreamHandler", "filters": ["sse_tokens"]}
    LOGGING["loggers"]["uvicorn.access"] = {
        "handlers": ["access"],
        "level": "INFO",
        "propagate": False,
    }
