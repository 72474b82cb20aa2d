from django.urls import include, path

from reactive_celery.metrics_view import metrics_view

urlpatterns = [
    path("api/", include("tests.testapp.urls")),
    path("api/queryobserver/", include("reactive_celery.urls")),
    path("internal/metrics", metrics_view),
]
