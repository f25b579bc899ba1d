"""A logging filter that keeps stream tokens out of logs.

Add it to the handlers that log request lines (``uvicorn.access``,
``django.server``, a proxy's)::

    LOGGING = {..., "filters": {"sse_tokens": {"()": "django_sse.logs.RedactTokens"}},
               "handlers": {"console": {..., "filters": ["sse_tokens"]}}}
"""

from __future__ import annotations

import logging
import re
from typing import Any

TOKEN_RE = re.compile(r"([?&]token=)[^&\s\"']*")


def redact(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter replaced."""
    return TOKEN_RE.sub(r"\1[redacted]", text)


def _redact_arg(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactTokens(logging.Filter):
    """Redact ``token=`` values in a record's message and in each of its arguments.

    The arguments keep their shape: formatters such as uvicorn's
    ``AccessFormatter`` read them by position."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True
