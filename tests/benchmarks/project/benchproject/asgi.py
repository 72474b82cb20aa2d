"""ASGI application exactly as README.md shows it, with the collector thresholds
docs/deployment.md gives for a server of many sockets (``BENCH_ASGI_GC=python``:
Python's own)."""

import gc
import os

if os.environ.get("BENCH_ASGI_GC", "deployment") == "deployment":
    gc.set_threshold(100_000, 20, 10)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchproject.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from reactive_celery.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
