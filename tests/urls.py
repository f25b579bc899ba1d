from __future__ import annotations

from importlib.util import find_spec

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from django_sse.metrics_view import metrics
from tests.testapp import views

urlpatterns = [
    path("sse/", include("django_sse.urls")),
    path("admin/", admin.site.urls),
    path("metrics/", metrics),
    path("test/login/", views.login_as),
    path("test/publish/", views.publish),
    path("test/publish-sync/", views.publish_sync),
    path("test/publish-to-others/", views.publish_to_others),
    path("test/apublish-to-others/", views.apublish_to_others),
    path("test/notify-to-others/", views.notify_to_others),
    path("test/stats/", views.stats),
    path("test/imported/", views.imported),
    path("test/page/", views.page),
    path("test/presence/", views.presence_page),
    path("test/flaky-stream/", views.flaky_stream),
    path("test/logout/", views.logout_view),
    path("test/drf-token/", views.drf_token),
    path("test/drf-token/delete/", views.drf_token_delete),
    path("test/deactivate/", views.deactivate),
    path("test/revoke/", views.revoke_view),
    path("test/bulk-edit/", views.bulk_edit),
    path("test/js/", include("tests.testapp.jsviews")),
    path("test/session/", include("tests.testapp.session_views")),
    path("test/inbox/", include("tests.testapp.inbox_views")),
]

if settings.SSE_METRICS and find_spec("django_prometheus") is not None:
    # django-prometheus's own /metrics view exports the same registry.
    urlpatterns.append(path("django-prometheus/", include("django_prometheus.urls")))
