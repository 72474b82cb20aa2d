from django.contrib.auth import get_user_model
from django.shortcuts import render
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from reactive_celery import reactive, status
from rest_framework import permissions, viewsets
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.response import Response

from .models import Task
from .serializers import TaskSerializer


def board(request):
    """The page at ``/``: the board's lists, made live in the browser by ``board.js``."""
    users = get_user_model().objects.order_by("username").only("id", "username")
    return render(request, "tasks/index.html", {"users": users})


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
    """``/api/tasks/``; live over ``ws/reactive/`` (or ``?observe=<subscriber id>``).

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

    @reactive
    @action(detail=False, permission_classes=[permissions.IsAuthenticated])
    def mine(self, request):
        """``/api/tasks/mine/``: the logged-in user's tasks, one observer per user."""
        tasks = self.filter_queryset(self.get_queryset().filter(owner=request.user))
        return Response(self.get_serializer(tasks, many=True).data)


@reactive(poll_interval=1, per_user=False, primary_key="name")
class ServerStatusViewSet(viewsets.ViewSet):
    """``/api/status/``: the server's clock and reactive_celery's counters.

    Nothing here is in the database, so no write announces a change: ``celery
    beat`` re-runs the view every second while a page shows it, and only the
    rows that changed are pushed. One observer serves every user.
    """

    permission_classes = [permissions.AllowAny]

    def list(self, request):
        state = status.collect()
        rows = {
            "server time": timezone.now().strftime("%H:%M:%S UTC"),
            "open sockets": state["subscribers"],
            "observers": state["observers"],
            "queued evaluations": state["queue"]["depth"],
            "evaluations": state["evaluations"],
        }
        return Response([{"name": name, "value": value} for name, value in rows.items()])
