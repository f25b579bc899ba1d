"""A logging filter that keeps stream tokens out of logs.

A stream token travels in the URL (``?token=``), since ``EventSource`` cannot
send headers, and access logs record URLs. django_sse never logs a URL; add
this filter to the handlers of loggers that do (``uvicorn.access``, your own
request logging) and ``token=`` values become ``token=[redacted]``::

    LOGGING = {
        "version": 1,
        "filters": {"sse_tokens": {"()": "django_sse.logs.RedactStreamTokens"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["sse_tokens"]}},
        ...
    }
"""

from __future__ import annotations

import logging
import re
from typing import Any

TOKEN_RE = re.compile(r"(?<![A-Za-z0-9_])(token=)[^&\s\"']+")
REDACTED = r"\1[redacted]"


def redact(text: str) -> str:
    """``text`` with every ``token=<value>`` replaced by ``token=[redacted]``."""
    return TOKEN_RE.sub(REDACTED, text)


def _redact_arg(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactStreamTokens(logging.Filter):
    """Redact ``token=`` values in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True
