"""System checks of the metrics settings (ids ``django_sse.E060`` and up)."""

from __future__ import annotations

import os
from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register

from .conf import SETTINGS, conf, setting_error

_SETTING = next(s for s in SETTINGS if s.name == "SSE_METRICS")


@register(Tags.compatibility)
def check_metrics(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.conf import settings

    value = getattr(settings, "SSE_METRICS", False)
    if setting_error(_SETTING, value) is not None or not conf.SSE_METRICS:
        return []  # off, or E003 says what is wrong
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        return [
            Error(
                f"SSE_METRICS is on but prometheus_client cannot be imported ({exc}): "
                "nothing is counted.",
                hint="pip install 'django-sse-notify[metrics]' (prometheus-client), or set "
                "SSE_METRICS = False.",
                id="django_sse.E060",
            )
        ]
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder and not (os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)):
        return [
            Error(
                f"PROMETHEUS_MULTIPROC_DIR is {folder!r}, which is not a writable directory: "
                "prometheus_client's multiprocess mode fails on the first count.",
                hint="Create the directory (empty it at each deploy, before the server "
                "starts) and let the server's user write it, or unset the variable.",
                id="django_sse.E061",
            )
        ]
    return []
