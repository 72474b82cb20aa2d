"""WebSocket routes; include them in your ASGI application's ``URLRouter``.

from reactive_celery.origins import OriginValidator
from reactive_celery.routing import websocket_urlpatterns
application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
})
"""

from __future__ import annotations

from django.urls import re_path

from .consumers import BatchedConsumer, SubscriberConsumer

__all__ = ["websocket_urlpatterns"]

# Channels' URLRouter takes Django's patterns with ASGI apps, which django-stubs types as views.
websocket_urlpatterns = [
    re_path(r"^ws/reactive/$", BatchedConsumer.as_asgi()),  # type: ignore[arg-type]
    re_path(r"^ws/(?P<subscriber_id>[^/]+)$", SubscriberConsumer.as_asgi()),  # type: ignore[arg-type]
]
