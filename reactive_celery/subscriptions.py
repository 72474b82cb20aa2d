"""Subscribing over HTTP: ``GET <endpoint>?observe=<subscriber id>``.

The view runs under the observer's lock, so the answer's version is exactly
the one the next push builds on: no change can fall between the snapshot and
the first diff the socket receives.
"""

from __future__ import annotations

import re
from typing import Any

import redis
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response

from . import broadcast, coordination, store
from .conf import reactive_settings
from .decorators import ReactiveOptions
from .diff import diff
from .evaluation import result_from_response, view_path
from .exceptions import ConfigurationError, ObserverError
from .spec import OBSERVE_PARAM, ObserverSpec

__all__ = ["RESUME_ATTRIBUTE", "SUBSCRIBER_ID", "StoreUnavailable", "observe", "user_key"]

#: Set on a socket's subscribe request to the version the client holds (resume).
RESUME_ATTRIBUTE = "reactive_since"

#: What a subscriber id may look like: a client-chosen random token.
SUBSCRIBER_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


class StoreUnavailable(APIException):
    """503: the reactive store (Redis) or channel layer cannot be reached."""

    status_code = 503
    default_detail = "Live updates are unavailable right now (reactive store unreachable)."
    default_code = "reactive_unavailable"


def user_key(user: Any) -> str:
    """How a user is recorded on subscribers: its pk, or "" when anonymous."""
    if user is None or not getattr(user, "is_authenticated", False):
        return ""
    return str(user.pk)


def _primary_key(viewset: Any, options: ReactiveOptions) -> str:
    if options.primary_key:
        return options.primary_key
    try:
        model = viewset.get_queryset().model
    except Exception as exc:
        raise ConfigurationError(
            f"{type(viewset).__name__} has no queryset to take a primary key from; "
            f"pass @reactive(primary_key='<field>')."
        ) from exc
    return model._meta.pk.name


def _strip_observe(request: Any) -> None:
    query = request._request.GET.copy()
    query.pop(OBSERVE_PARAM, None)
    query._mutable = False
    request._request.GET = query
    # Pagination links are built from META: keep the subscriber id out of them.
    request._request.META["QUERY_STRING"] = query.urlencode()


def observe(
    viewset: Any,
    request: Any,
    method: Any,
    options: ReactiveOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Response:
    """Answer an observing GET: run the view, register the subscription, join the group."""
    try:
        return _observe(viewset, request, method, options, args, kwargs)
    except (redis.RedisError, OSError) as exc:
        raise StoreUnavailable() from exc


def _observe(
    viewset: Any,
    request: Any,
    method: Any,
    options: ReactiveOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Response:
    sid = request.query_params.get(OBSERVE_PARAM, "")
    if not SUBSCRIBER_ID.fullmatch(sid):
        raise ValidationError(
            {OBSERVE_PARAM: ["Malformed subscriber id: use 8-64 letters, digits, '-' or '_'."]}
        )
    subscriber = store.get_subscriber(sid)
    if subscriber is None:
        raise ValidationError(
            {OBSERVE_PARAM: ["Unknown subscriber id: open the WebSocket ws/<id> first."]}
        )
    user = user_key(request.user)
    if subscriber.user != user:
        raise PermissionDenied("This subscriber id belongs to another user's socket.")
    primary_key = _primary_key(viewset, options)
    spec = ObserverSpec.build(
        view=view_path(viewset),
        action=getattr(viewset, "action", None) or request.method.lower(),
        path=request._request.path_info,
        query=_pairs(request),
        kwargs=kwargs,
        user=user if options.per_user else None,
        host=request.get_host(),
        secure=request.is_secure(),
        primary_key=primary_key,
    )
    oid = spec.id
    _strip_observe(request)
    try:
        lock = coordination.observer_lock(oid)
        with lock as held:
            # Until its dependencies are stored, any committed write must reach this
            # observer: the running view may already have read past it.
            coordination.watch(oid, reactive_settings.EVALUATION_TIME_LIMIT + 5)
            try:
                response = _subscribe_locked(
                    viewset, request, method, args, kwargs, spec, subscriber, user, options
                )
            finally:
                coordination.unwatch(oid)
    except ObserverError as exc:
        raise StoreUnavailable(str(exc)) from exc
    if held.changed_meanwhile:
        from .tasks import enqueue_evaluation

        enqueue_evaluation(oid)
    return response


def _pairs(request: Any) -> list[tuple[str, str]]:
    return [(k, v) for k, values in request.query_params.lists() for v in values]


def _subscribe_locked(
    viewset: Any,
    request: Any,
    method: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    spec: ObserverSpec,
    subscriber: store.Subscriber,
    user: str,
    options: ReactiveOptions,
) -> Response:
    from .dependencies import capture_tables, tables_for

    oid = spec.id
    with capture_tables() as tables:
        response = method(viewset, request, *args, **kwargs)
    if getattr(response, "status_code", 500) != 200:
        return response
    result = result_from_response(response)
    try:
        stored = store.load_observer(oid)
        previous = stored.items if stored else []
        changes = diff(previous, result.items, spec.primary_key) if stored else []
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    # A recreated observer must never repeat a version a client still holds:
    # it starts at Redis's clock in ms, which outruns one evaluation per version.
    version = store.now_ms()
    if stored:
        version = stored.version + 1 if changes else stored.version
    # Subscribe first: a concurrent last unsubscribe then finds a member and keeps the observer.
    store.subscribe(oid, subscriber.id)
    store.save_observer(
        oid,
        spec=spec.to_json(),
        items=result.items,
        meta=result.meta,
        version=version,
        tables=tables | tables_for(options.dependencies),
        creator=stored.creator if stored else user,
        old_tables=stored.tables if stored else (),
    )
    if options.poll_interval is not None:
        from .polling import schedule

        # After subscribe: beat's claim drops entries of observers without subscribers.
        schedule(oid, options.poll_interval)
    group = broadcast.group_name(oid)
    sends = []
    if changes:
        store.record_diff(oid, version, spec.primary_key, changes)
        sends.append((group, broadcast.diff_message(oid, version, spec.primary_key, changes)))
    # Existing subscribers get the catch-up diff before the new socket joins the group.
    broadcast.send(group_sends=sends, group_adds=[(group, subscriber.channel)])
    if store.get_subscriber(subscriber.id) is None:
        store.unsubscribe(oid, subscriber.id)
        raise NotFound("The subscriber's socket closed during the subscription.")
    answer: dict[str, Any] = {
        "observer": oid,
        "version": version,
        "primary_key": spec.primary_key,
        **result.meta,
    }
    since = getattr(request._request, RESUME_ATTRIBUTE, None)
    diffs = store.replay(oid, since, version) if since is not None and stored else None
    if diffs is not None:
        answer["diffs"] = diffs
    else:
        answer["items"] = result.items
        if since is not None:
            answer["reset"] = True
    return Response(answer)
