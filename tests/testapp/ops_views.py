"""Views of the operations tests: a polled counter outside the database, a stalling list."""

import functools
import time

import redis
from django.conf import settings
from rest_framework import viewsets
from rest_framework.response import Response

from reactive_celery import reactive

from .models import Item
from .serializers import ItemSerializer

__all__ = ["StallingItemViewSet", "TickViewSet", "ticks"]

#: A Redis database apart from the reactive store, so key counts there stay exact.
TICKS_DB = 3


@functools.cache
def ticks() -> redis.Redis:
    """The Redis holding the counters, as a test reads them."""
    url = f"{settings.REDIS_URL.rstrip('/')}/{TICKS_DB}"
    return redis.Redis.from_url(url, decode_responses=True)


@reactive(poll_interval=1, primary_key="name")
class TickViewSet(viewsets.ViewSet):
    """``?name=<n>``: a counter outside the database that each call advances."""

    def list(self, request):
        name = request.query_params.get("name", "default")
        counter = f"tick:{name}"
        client = ticks()
        value = client.incr(counter)
        client.expire(counter, 600)
        return Response([{"name": name, "value": value}])


@reactive
class StallingItemViewSet(viewsets.ReadOnlyModelViewSet):
    """Items; stalls 10 s while an item named "stall" exists (over any test's limit)."""

    queryset = Item.objects.all()
    serializer_class = ItemSerializer

    def list(self, request, *args, **kwargs):
        if Item.objects.filter(name="stall").exists():
            time.sleep(10)
        return super().list(request, *args, **kwargs)
