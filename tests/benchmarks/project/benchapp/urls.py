from django.urls import path
from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.register("rows", views.RowViewSet)

urlpatterns = [path("bulk/", views.bulk), *router.urls]
