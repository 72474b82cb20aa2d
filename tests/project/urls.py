from django.urls import include, path

urlpatterns = [
    path("api/", include("tests.testapp.urls")),
    path("api/queryobserver/", include("reactive_celery.urls")),
]
