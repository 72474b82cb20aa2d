from django.urls import include, path

urlpatterns = [
    path("api/", include("benchapp.urls")),
    path("api/queryobserver/", include("reactive_celery.urls")),
]
