from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView
from rest_framework.routers import DefaultRouter

from tasks.views import TaskViewSet

router = DefaultRouter()
router.register("tasks", TaskViewSet)

urlpatterns = [
    path("", TemplateView.as_view(template_name="tasks/index.html"), name="index"),
    path("admin/", admin.site.urls),
    path("api/queryobserver/", include("reactive_celery.urls")),
    path("api/", include(router.urls)),
]
