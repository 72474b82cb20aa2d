"""The WebSocket handshake's ``Origin`` check, with the semantics of Django's CSRF check.

A socket carries the session cookie of whoever opens it, so a page from any
other origin that can open one reads that user's data. ``OriginValidator``
wraps the websocket application and accepts a handshake only when its
``Origin`` header is

- the request's own origin: ``http`` for ``ws`` (``https`` for ``wss``, or
  when ``SECURE_PROXY_SSL_HEADER`` says so), ``://``, then the ``Host`` header
  with its port, that host being in ``ALLOWED_HOSTS``; or
- in ``CSRF_TRUSTED_ORIGINS``: exactly ``scheme://host[:port]``, or
  ``scheme://*.domain[:port]`` for the domain and its subdomains.

That is ``CsrfViewMiddleware._origin_verified``, the check Django makes on an
unsafe HTTP request. Channels' ``AllowedHostsOriginValidator`` compares the
host only, so ``http://localhost:9999`` (any other local server) passed for
a site on ``http://localhost:8000``.

A handshake without ``Origin`` whose query names a ``ticket`` (``tickets``)
passes: a ticket is not an ambient credential a page can make a browser send,
so there is nothing for another origin to hijack, and the socket never falls
back to the cookie. Browsers always send ``Origin``; with one, the check above
applies, ticket or not.

Any other handshake, one without ``Origin`` included, is closed before it is
accepted (the server answers HTTP 403, as Channels' validator does) and
logged once on ``reactive_celery.origins``::

    from reactive_celery.origins import OriginValidator

    "websocket": OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.utils.http import is_same_domain

from . import tickets

__all__ = ["OriginValidator", "origin_verified"]

logger = logging.getLogger("reactive_celery.origins")

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[_Scope, _Receive, _Send], Awaitable[None]]


class _Handshake(HttpRequest):
    """The handshake as Django's request, so ``get_host`` and ``is_secure`` apply as in Django."""

    def __init__(self, scope: _Scope) -> None:
        super().__init__()
        for raw_name, raw_value in scope.get("headers", ()):
            name = "HTTP_" + raw_name.decode("latin1").upper().replace("-", "_")
            value = raw_value.decode("latin1")
            # Repeated headers are joined, as Django's ASGIRequest does: two Origins match nothing.
            self.META[name] = f"{self.META[name]},{value}" if name in self.META else value
        server = scope.get("server") or ("unknown", "0")
        self.META["SERVER_NAME"], self.META["SERVER_PORT"] = server[0], str(server[1])
        self._secure_scheme = scope.get("scheme") == "wss"

    def _get_scheme(self) -> str:
        return "https" if self._secure_scheme else "http"


def _trusted(origin: str) -> bool:
    """Whether ``origin`` is in ``CSRF_TRUSTED_ORIGINS`` (an exact entry or a ``*.`` wildcard)."""
    trusted = list(settings.CSRF_TRUSTED_ORIGINS)
    if origin in {entry for entry in trusted if "*" not in entry}:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    for entry in trusted:
        if "*" in entry:
            pattern = urlsplit(entry)
            if pattern.scheme == parsed.scheme and is_same_domain(
                parsed.netloc, pattern.netloc.lstrip("*")
            ):
                return True
    return False


def origin_verified(scope: _Scope) -> tuple[bool, str]:
    """Whether a WebSocket scope's ``Origin`` may open a socket, and the origin seen.

    The origin seen is ``""`` when the header is missing; that passes only for a
    handshake that names a ticket.
    """
    request = _Handshake(scope)
    origin = request.META.get("HTTP_ORIGIN", "")
    if not origin:
        return tickets.presented(scope) is not None, ""
    try:
        own = f"{'https' if request.is_secure() else 'http'}://{request.get_host()}"
    except DisallowedHost:
        pass
    else:
        if origin == own:
            return True, origin
    return _trusted(origin), origin


class OriginValidator:
    """ASGI middleware around the websocket app: refuse handshakes from other origins."""

    def __init__(self, application: _ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """Called per connection: pass a verified handshake on, close any other before accept."""
        if scope["type"] != "websocket":
            raise ValueError("OriginValidator wraps the websocket application only.")
        verified, origin = origin_verified(scope)
        if verified:
            await self.application(scope, receive, send)
            return
        host = _Handshake(scope).META.get("HTTP_HOST", "")
        path = scope.get("path", "")
        logger.warning(
            "Refused WebSocket %s (Host %r): Origin %s is not the site's own origin "
            "nor in CSRF_TRUSTED_ORIGINS",
            path,
            host,
            repr(origin) if origin else "missing",
            extra={"origin": origin, "host": host, "path": path},
        )
        message = await receive()
        if message["type"] == "websocket.connect":
            # Closing before accept: the server answers the handshake with HTTP 403.
            await send({"type": "websocket.close", "code": 1008})
