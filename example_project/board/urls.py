from django.contrib import admin
from django.urls import include, path
from rest_framework.routers import DefaultRouter

from tasks.views import ServerStatusViewSet, TaskViewSet, board

router = DefaultRouter()
router.register("tasks", TaskViewSet)
router.register("status", ServerStatusViewSet, basename="status")

urlpatterns = [
    path("", board, name="board"),
    path("admin/", admin.site.urls),
    path("api/queryobserver/", include("reactive_celery.urls")),
    path("api/", include(router.urls)),
]
