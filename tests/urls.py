from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from tests.testapp import views

urlpatterns = [
    path("sse/", include("django_sse.urls")),
    path("admin/", admin.site.urls),
    path("test/login/", views.login_as),
    path("test/publish/", views.publish),
    path("test/publish-sync/", views.publish_sync),
    path("test/publish-to-others/", views.publish_to_others),
    path("test/apublish-to-others/", views.apublish_to_others),
    path("test/stats/", views.stats),
    path("test/page/", views.page),
    path("test/presence/", views.presence_page),
    path("test/flaky-stream/", views.flaky_stream),
    path("test/logout/", views.logout_view),
    path("test/drf-token/", views.drf_token),
    path("test/drf-token/delete/", views.drf_token_delete),
    path("test/deactivate/", views.deactivate),
    path("test/revoke/", views.revoke_view),
    path("test/js/", include("tests.testapp.jsviews")),
    path("test/session/", include("tests.testapp.session_views")),
]
