"""A logging filter that keeps stream tokens out of logs.

Add it to the handlers that log request lines (``uvicorn.access``,
``django.server``, a proxy's)::

    LOGGING = {..., "filters": {"sse_tokens": {"()": "django_sse.logs.RedactTokens"}},
               "handlers": {"console": {..., "filters": ["sse_tokens"]}}}
"""

from __future__ import annotations

import logging
import re

TOKEN_RE = re.compile(r"([?&]token=)[^&\s\"']*")


def redact(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter replaced."""
    return TOKEN_RE.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = redact(record.getMessage())
            record.args = None
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True
