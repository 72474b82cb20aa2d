"""ASGI application of the DCRF side of ``compare_dcrf``: one list observer of Item.

    uvicorn tests.benchmarks.dcrf_app:application

The consumer follows every Item change through djangochannelsrestframework's
``model_observer`` and pushes each per-instance create/update/delete to the
socket; the client keeps the list itself. The benchmark process imports this
module too, so its writes run DCRF's signal receivers (serialise, group_send).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.benchmarks.dcrf_settings")

import django  # noqa: E402

django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402
from djangochannelsrestframework.decorators import action  # noqa: E402
from djangochannelsrestframework.generics import GenericAsyncAPIConsumer  # noqa: E402
from djangochannelsrestframework.observer import model_observer  # noqa: E402
from rest_framework.permissions import AllowAny  # noqa: E402

from tests.testapp.models import Item  # noqa: E402
from tests.testapp.serializers import ItemSerializer  # noqa: E402


class ItemListConsumer(GenericAsyncAPIConsumer):
    queryset = Item.objects.all()
    serializer_class = ItemSerializer
    permission_classes = (AllowAny,)

    @model_observer(Item)
    async def item_activity(self, message, observer=None, subscribing_request_ids=(), **kwargs):
        for request_id in subscribing_request_ids:
            await self.send_json({**message, "request_id": request_id})

    @item_activity.serializer
    def item_activity(self, instance, action, **kwargs):
        return {"action": action.value, "pk": instance.pk, "data": ItemSerializer(instance).data}

    @action()
    async def subscribe_to_item_activity(self, request_id, **kwargs):
        await self.item_activity.subscribe(request_id=request_id)
        return {}, 201


application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("ws/dcrf/items/", ItemListConsumer.as_asgi())])}
)
