from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from tests.testapp import views

urlpatterns = [
    path("sse/", include("django_sse.urls")),
    path("admin/", admin.site.urls),
    path("test/login/", views.login_as),
    path("test/logout/", views.logout_view),
    path("test/csrf/", views.csrf),
    path("test/page/", views.page),
    path("test/account/", views.account),
    path("test/publish/", views.publish),
    path("test/publish-sync/", views.publish_sync),
    path("test/stats/", views.stats),
]
