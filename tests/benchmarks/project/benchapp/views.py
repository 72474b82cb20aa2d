import time

from django.db import transaction
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import viewsets
from rest_framework.decorators import api_view
from rest_framework.response import Response

from reactive_celery import reactive

from .models import Row
from .serializers import RowSerializer


@reactive
class RowViewSet(viewsets.ModelViewSet):
    """``/api/rows/?group=N``: one observer per group; writes are PATCHes of ``stamp``."""

    queryset = Row.objects.all()
    serializer_class = RowSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_fields = ["group"]

    def perform_update(self, serializer):
        # Just before the save's own commit: a frame's arrival minus this is commit-to-frame.
        serializer.save(saved=time.time())


@api_view(["POST"])
def bulk(request):
    """Scenario (e): ``saves`` plain ``save()`` calls over the rows of ``groups``, one transaction.

    Each row is stamped with the time of its own save; the answer carries the
    last stamp, taken just before the commit, which the client measures from.
    """
    groups = [int(g) for g in request.data["groups"]]
    saves = int(request.data["saves"])
    rows = list(Row.objects.filter(group__in=groups).order_by("id"))
    stamp = 0.0
    with transaction.atomic():
        for i in range(saves):
            row = rows[i % len(rows)]
            row.stamp = stamp = time.time()
            row.save(update_fields=["stamp"])
    return Response({"saves": saves, "last_stamp": stamp, "committed": time.time()})
