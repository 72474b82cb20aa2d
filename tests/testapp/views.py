from django.db.models import Count
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import permissions, viewsets
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import LimitOffsetPagination, PageNumberPagination
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle

from reactive_celery import reactive

from .models import Item
from .serializers import DetailedItemSerializer, ItemSerializer


@reactive
class ItemViewSet(viewsets.ModelViewSet):
    """Filters, ordering, retrieve and a custom list action."""

    queryset = Item.objects.all()
    serializer_class = ItemSerializer
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_fields = ["enabled"]
    ordering_fields = ["name", "position", "id"]

    @reactive
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @reactive
    @action(detail=False)
    def enabled_names(self, request):
        items = self.get_queryset().filter(enabled=True).order_by("name")
        return Response(ItemSerializer(items, many=True).data)


class TenPerPage(LimitOffsetPagination):
    default_limit = 10


@reactive
class LimitedItemViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Item.objects.order_by("id")
    serializer_class = ItemSerializer
    pagination_class = TenPerPage


class FivePerPage(PageNumberPagination):
    page_size = 5


@reactive
class PagedItemViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Item.objects.order_by("id")
    serializer_class = ItemSerializer
    pagination_class = FivePerPage


@reactive
class DetailedItemViewSet(viewsets.ReadOnlyModelViewSet):
    """Nests the category and tags: their tables are dependencies too."""

    queryset = Item.objects.select_related("category").prefetch_related("tags")
    serializer_class = DetailedItemSerializer


@reactive
class OwnItemViewSet(viewsets.ReadOnlyModelViewSet):
    """Each user sees only their own items."""

    serializer_class = ItemSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        return Item.objects.filter(owner=self.request.user)


class StaffItemViewSet(viewsets.ReadOnlyModelViewSet):
    """Only staff may observe; revoking is_staff ends the subscription."""

    queryset = Item.objects.all()
    serializer_class = ItemSerializer
    permission_classes = [permissions.IsAdminUser]

    @reactive
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


class PlainItemViewSet(viewsets.ReadOnlyModelViewSet):
    """Not reactive: subscribing to it is refused."""

    queryset = Item.objects.all()
    serializer_class = ItemSerializer


@reactive
class SlowItemViewSet(viewsets.ReadOnlyModelViewSet):
    """Takes 1.5 s per evaluation, so a test can kill a worker in the middle of one."""

    queryset = Item.objects.all()
    serializer_class = ItemSerializer

    def list(self, request, *args, **kwargs):
        import time

        time.sleep(1.5)
        return super().list(request, *args, **kwargs)


class OncePerMinute(AnonRateThrottle):
    rate = "1/min"


@reactive
class ThrottledItemViewSet(viewsets.ReadOnlyModelViewSet):
    """Anonymous clients may GET once a minute; evaluations must not count."""

    queryset = Item.objects.all()
    serializer_class = ItemSerializer
    throttle_classes = [OncePerMinute]


@reactive
class GroupItemViewSet(viewsets.ReadOnlyModelViewSet):
    """One observer per position (a group): precise invalidation's candidate view."""

    queryset = Item.objects.all()
    serializer_class = ItemSerializer
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_fields = ["position", "enabled"]
    ordering = ["id"]


@reactive
class LeaderGroupViewSet(viewsets.ReadOnlyModelViewSet):
    """The items at the position of the one named "leader": get_queryset reads a row itself."""

    serializer_class = ItemSerializer

    def get_queryset(self):
        leader = Item.objects.filter(name="leader").values_list("position", flat=True).first()
        return Item.objects.filter(position=leader).order_by("id")


@reactive
class AnnotatedItemViewSet(viewsets.ReadOnlyModelViewSet):
    """distinct() over an annotation: cannot be probed, invalidated per table."""

    queryset = Item.objects.annotate(tag_count=Count("tags")).distinct().order_by("id")
    serializer_class = ItemSerializer
