"""ASGI entry point: ``uvicorn board.asgi:application``.

HTTP goes to Django (with the static files of the admin served too, since
this demo has no web server in front); WebSockets at ``ws/<subscriber id>``
go to reactive_celery's consumer.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "board.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from reactive_celery.origins import OriginValidator  # noqa: E402
from reactive_celery.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_asgi_app),
        # The socket must come from the page's own origin (scheme, host and port)
        # and carries the session cookie, so it belongs to the same user as the
        # subscribing GET.
        "websocket": OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
