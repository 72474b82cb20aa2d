from django.urls import path
from rest_framework.routers import DefaultRouter

from . import ops_views, security_views, ticket_views, views

router = DefaultRouter()
router.register("items", views.ItemViewSet)
router.register("limited", views.LimitedItemViewSet, basename="limited")
router.register("paged", views.PagedItemViewSet, basename="paged")
router.register("detailed", views.DetailedItemViewSet, basename="detailed")
router.register("own", views.OwnItemViewSet, basename="own")
router.register("staff", views.StaffItemViewSet, basename="staff")
router.register("plain", views.PlainItemViewSet, basename="plain")
router.register("groups", views.GroupItemViewSet, basename="groups")
router.register("leader-group", views.LeaderGroupViewSet, basename="leader-group")
router.register("annotated", views.AnnotatedItemViewSet, basename="annotated")
router.register("slow", views.SlowItemViewSet, basename="slow")
router.register("throttled", views.ThrottledItemViewSet, basename="throttled")
router.register("ticks", ops_views.TickViewSet, basename="ticks")
router.register("stalling", ops_views.StallingItemViewSet, basename="stalling")
router.register("shared-staff", security_views.SharedStaffViewSet, basename="shared-staff")
router.register("wrongly-shared", security_views.WronglySharedOwnViewSet, basename="wrongly")
router.register("settling", security_views.SettlingClockViewSet, basename="settling")
router.register("basic-only", security_views.BasicOnlyViewSet, basename="basic-only")
router.register("exploding", security_views.ExplodingViewSet, basename="exploding")
router.register("token-own", ticket_views.TokenOwnViewSet, basename="token-own")
router.register("session-only", ticket_views.SessionOnlyViewSet, basename="session-only")

urlpatterns = [*router.urls, path("logout/", security_views.logout_view)]
