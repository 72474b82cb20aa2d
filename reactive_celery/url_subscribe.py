"""Subscribing by URL from a socket: resolve it to a ``@reactive`` view and run it.

The view runs through DRF's full dispatch as the socket's user, with
``?observe=<the socket's subscriber id>``, so permissions, querysets, filters
and the subscription itself behave exactly as for an HTTP GET.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.http import QueryDict
from django.urls import Resolver404, resolve

from .evaluation import GetRequest
from .spec import OBSERVE_PARAM
from .subscriptions import RESUME_ATTRIBUTE

__all__ = ["SubscribeRefused", "subscribe_url"]

_STATUS_CODES = {
    400: "bad_message",
    401: "forbidden",
    403: "forbidden",
    404: "not_found",
    503: "unavailable",
}


@dataclass
class SubscribeRefused(Exception):
    """A socket subscribe request that cannot be served; ``code`` goes in the error frame."""

    code: str
    message: str


def _reactive_method(func: Any) -> Any:
    cls = getattr(func, "cls", None)
    if cls is None:
        return None
    actions = getattr(func, "actions", None)
    name = actions.get("get") if actions else "get"
    method = getattr(cls, name, None) if name else None
    return method if getattr(method, "reactive_options", None) is not None else None


def subscribe_url(
    url: str,
    subscriber_id: str,
    user: Any,
    host: str,
    secure: bool,
    since: int | None,
    remote_addr: str = "",
) -> dict[str, Any]:
    """Subscribe ``subscriber_id`` to the view at ``url``; return the answer's data.

    Called in a thread by the batched consumer. Raises ``SubscribeRefused``.
    """
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        raise SubscribeRefused("bad_url", "url must be a path on this site, e.g. /api/tasks/.")
    try:
        match = resolve(parts.path)
    except Resolver404:
        raise SubscribeRefused("not_found", f"No view answers {parts.path}.") from None
    if _reactive_method(match.func) is None:
        raise SubscribeRefused("not_reactive", f"The view at {parts.path} is not @reactive.")
    query = QueryDict(parts.query, mutable=True)
    query.pop(OBSERVE_PARAM, None)
    query_string = "&".join(
        s for s in (query.urlencode(), urlencode({OBSERVE_PARAM: subscriber_id})) if s
    )
    request = GetRequest(parts.path, query_string, host, secure, remote_addr).run_as(user)
    setattr(request, RESUME_ATTRIBUTE, since)
    response = match.func(request, *match.args, **match.kwargs)
    status = getattr(response, "status_code", 500)
    data = getattr(response, "data", None)
    if status != 200 or not isinstance(data, dict) or "observer" not in data:
        detail = data.get("detail") if isinstance(data, dict) else None
        raise SubscribeRefused(
            _STATUS_CODES.get(status, "error"), str(detail or f"The view answered {status}.")
        )
    return dict(data)
