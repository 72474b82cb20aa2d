from django_filters.rest_framework import DjangoFilterBackend
from reactive_celery import reactive
from rest_framework import permissions, viewsets
from rest_framework.filters import OrderingFilter

from .models import Task
from .serializers import TaskSerializer


class StableOrderingFilter(OrderingFilter):
    """``?ordering=`` with the id as tie-breaker.

    Equal titles would otherwise come back in any order, and every evaluation
    that swaps them would push needless moves.
    """

    def get_ordering(self, request, queryset, view):
        ordering = super().get_ordering(request, queryset, view)
        if ordering and not any(field.lstrip("-") in ("id", "pk") for field in ordering):
            ordering = [*ordering, "-id"]
        return ordering


@reactive
class TaskViewSet(viewsets.ModelViewSet):
    """``/api/tasks/``; ``?observe=<subscriber id>`` makes the list live.

    Filters: ``?done=true``, ``?owner=<user id>``; ordering:
    ``?ordering=title`` (or ``-created``, ``done``, ``id``).
    """

    queryset = Task.objects.select_related("owner")
    serializer_class = TaskSerializer
    # A demo on loopback: anyone may edit. A real project would not.
    permission_classes = [permissions.AllowAny]
    filter_backends = [DjangoFilterBackend, StableOrderingFilter]
    filterset_fields = ["done", "owner"]
    ordering_fields = ["title", "done", "created", "id"]
    ordering = ["-created", "-id"]
