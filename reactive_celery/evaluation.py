"""Running an observed view: from a spec in a worker, or from the live request.

Both paths produce the same ``Result``: JSON-ready items, the pagination fields
beside them, and the tables the view read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, QueryDict
from django.urls import Resolver404, ResolverMatch, resolve
from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from .dependencies import capture_tables
from .exceptions import ObserverError, ObserverForbidden, ObserverGone
from .spec import ObserverSpec

__all__ = [
    "PAGINATION_FIELDS",
    "GetRequest",
    "Result",
    "evaluate_spec",
    "permitted",
    "result_from_response",
    "view_path",
]

#: Fields of a paginated answer kept beside the items.
PAGINATION_FIELDS = ("count", "next", "previous")


@dataclass
class Result:
    """One evaluation's outcome."""

    items: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    tables: set[str] = field(default_factory=set)


def view_path(view: Any) -> str:
    """Dotted path of a view class, as stored in specs."""
    cls = view if isinstance(view, type) else type(view)
    return f"{cls.__module__}.{cls.__qualname__}"


def _json_ready(data: Any) -> Any:
    # DRF's encoder handles Decimal, datetime, UUID; the channel layer's msgpack does not.
    return json.loads(json.dumps(data, cls=JSONEncoder))


def result_from_response(response: Response) -> Result:
    """Items and pagination fields of a successful DRF response."""
    data = _json_ready(response.data)
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        meta = {name: data[name] for name in PAGINATION_FIELDS if name in data}
        return Result(items=data["results"], meta=meta)
    if isinstance(data, list):
        return Result(items=data)
    if isinstance(data, dict):
        return Result(items=[data])
    raise ObserverError(
        f"A reactive view must return a list, a paginated list or one object, "
        f"not {type(data).__name__}."
    )


class GetRequest(HttpRequest):
    """A GET built without a client: for workers and socket subscriptions."""

    def __init__(
        self, path: str, query_string: str, host: str, secure: bool, remote_addr: str = ""
    ) -> None:
        super().__init__()
        hostname, _, port = host.partition(":")
        self.method = "GET"
        self.path = self.path_info = path
        self.GET = QueryDict(query_string)
        self.META.update(
            {
                "REQUEST_METHOD": "GET",
                "PATH_INFO": path,
                "QUERY_STRING": query_string,
                "HTTP_HOST": host,
                "SERVER_NAME": hostname or "localhost",
                "SERVER_PORT": port or ("443" if secure else "80"),
                "HTTP_ACCEPT": "application/json",
            }
        )
        if remote_addr:
            self.META["REMOTE_ADDR"] = remote_addr
        self._scheme = "https" if secure else "http"

    def _get_scheme(self) -> str:
        return self._scheme

    def run_as(self, user: AbstractBaseUser | AnonymousUser) -> GetRequest:
        """Authenticate as ``user`` whatever DRF's authentication classes are."""
        # django-stubs types request.user as the configured model; any user model will do.
        self.user = user  # type: ignore[assignment]
        self._force_auth_user = user  # DRF's own hook (APIRequestFactory uses it)
        return self


def _user(pk: str | None) -> AbstractBaseUser | AnonymousUser:
    if not pk:
        return AnonymousUser()
    model = get_user_model()
    try:
        user: AbstractBaseUser = model._default_manager.get(pk=model._meta.pk.to_python(pk))
    except model.DoesNotExist:
        raise ObserverGone("The observing user no longer exists.") from None
    # DRF's forced authentication does not look at is_active; a session would.
    if not getattr(user, "is_active", True):
        raise ObserverForbidden("The observing user was deactivated.")
    return user


def _as_view(func: Any, *, permissions: bool) -> Any:
    # Evaluations are the server's own work: they must not spend (or be refused by)
    # the user's request quota, and anonymous ones all share one REMOTE_ADDR.
    initkwargs = {**getattr(func, "initkwargs", {}), "throttle_classes": ()}
    if not permissions:
        initkwargs["permission_classes"] = ()
    actions = getattr(func, "actions", None)
    return func.cls.as_view(actions, **initkwargs) if actions else func.cls.as_view(**initkwargs)


def _resolve(spec: ObserverSpec) -> ResolverMatch:
    try:
        match = resolve(spec.path)
    except Resolver404:
        raise ObserverGone(f"{spec.path} no longer resolves to a view.") from None
    cls = getattr(match.func, "cls", None)
    if cls is None or view_path(cls) != spec.view:
        raise ObserverGone(f"{spec.path} no longer resolves to {spec.view}.")
    return match


def evaluate_spec(spec: ObserverSpec, run_as: str | None, *, shared: bool = False) -> Result:
    """Repeat the observed call as ``run_as`` and return its result.

    Permissions and querysets are applied anew each time, exactly as for the
    original request. A ``shared`` observer is computed as one fixed identity,
    an anonymous request with the permission checks left out, and never as one
    of its subscribers: each subscriber's permissions are checked by ``permitted``.
    """
    match = _resolve(spec)
    request = GetRequest(spec.path, spec.query_string, spec.host, spec.secure)
    request.run_as(AnonymousUser() if shared else _user(run_as))
    with capture_tables() as tables:
        response = _as_view(match.func, permissions=not shared)(
            request, *match.args, **match.kwargs
        )
    status = getattr(response, "status_code", 500)
    if status == 404:
        return Result(items=[], tables=tables)
    if status in (401, 403):
        raise ObserverForbidden("Permission to this view was withdrawn.")
    if status != 200 or not isinstance(response, Response):
        raise ObserverError(f"The view answered {status}.")
    result = result_from_response(response)
    result.tables = tables
    return result


def permitted(spec: ObserverSpec, users: Iterable[str]) -> set[str]:
    """The users (pk strings, "" for anonymous) whom the view's permission classes admit now.

    Called once per evaluation of a shared observer for all its subscribers:
    one query loads the users, then only permission classes run, not the view.
    """
    match = _resolve(spec)
    wanted = set(users)
    model = get_user_model()
    pks = [model._meta.pk.to_python(pk) for pk in wanted if pk]
    loaded = {str(user.pk): user for user in model._default_manager.filter(pk__in=pks)}
    allowed = set()
    for key in wanted:
        user = AnonymousUser() if not key else loaded.get(key)
        # AnonymousUser.is_active is False: only a real user can have been deactivated.
        if user is None or (key and not getattr(user, "is_active", True)):
            continue
        if _passes_permissions(match, spec, user):
            allowed.add(key)
    return allowed


def _passes_permissions(
    match: ResolverMatch, spec: ObserverSpec, user: AbstractBaseUser | AnonymousUser
) -> bool:
    func: Any = match.func
    view = func.cls(**getattr(func, "initkwargs", {}))
    view.args, view.kwargs = match.args, match.kwargs
    if getattr(func, "actions", None):
        view.action_map = func.actions
    http = GetRequest(spec.path, spec.query_string, spec.host, spec.secure).run_as(user)
    request = view.initialize_request(http)
    view.request = request
    view.format_kwarg = None
    try:
        view.check_permissions(request)
    except (NotAuthenticated, PermissionDenied):
        return False
    return True
