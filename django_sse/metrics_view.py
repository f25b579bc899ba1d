"""A ``/metrics`` view for Prometheus, in one process or in multiprocess mode.

Route it yourself (``path("metrics/", django_sse.metrics_view.metrics)``) and
let only Prometheus reach it (a firewall, or an nginx ``allow``/``deny``): it
shows volumes, never channel names or payloads. django-prometheus's own view
exports the same figures (both read ``prometheus_client``'s default registry).
"""

from __future__ import annotations

import os

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from . import metrics as figures
from .conf import conf


# GET only, so CSRF cannot apply: exempt, so other methods get a clean 405.
@login_not_required
@csrf_exempt
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text format of this process, or with
    ``PROMETHEUS_MULTIPROC_DIR`` set, of every worker process together."""
    if not conf.SSE_METRICS:
        raise Http404("SSE_METRICS is off")
    import prometheus_client
    from prometheus_client import multiprocess

    figures.get()  # made now, so that a fresh process shows its zeros
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # A worker killed since the last scrape: its streams are not open.
        figures.forget_dead_processes()
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = prometheus_client.REGISTRY
    return HttpResponse(
        prometheus_client.generate_latest(registry),
        content_type=prometheus_client.CONTENT_TYPE_LATEST,
    )
