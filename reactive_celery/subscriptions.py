"""Joining and leaving an observer: HTTP ``?observe=``, socket subscribe, unsubscribe.

    observe        GET <endpoint>?observe=<subscriber id> (the seed protocol, and the
                   path every socket subscribe takes too)
    subscribe_url  a socket's subscribe: resolve the URL to a @reactive view, run it
    unsubscribe    end one subscription

The view runs under the observer's lock, so the answer's version is exactly
the one the next push builds on: no change can fall between the snapshot and
the first diff the socket receives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import redis
from channels.exceptions import ChannelFull
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.http import QueryDict
from django.urls import Resolver404, resolve
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound, Throttled, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import broadcast, fanout, invalidation, observer, tickets
from .conf import reactive_settings
from .dependencies import capture_tables, tables_for
from .evaluation import GetRequest, Result, evaluate_spec, result_from_response, view_path
from .exceptions import (
    DependsOnUser,
    ObserverBusy,
    ObserverError,
    Refused,
    SocketServerBusy,
    StoreUnavailable,
    ViewMisconfigured,
)
from .options import ATTRIBUTE, ReactiveOptions
from .protocol import CODE_ERRORS, STATUS_ERRORS, SUBSCRIBER_ID, TOO_MANY_SUBSCRIPTIONS
from .spec import OBSERVE_PARAM, ObserverSpec
from .store import limits, locks, observers, schedule, subscribers
from .tasks import enqueue_evaluation

logger = logging.getLogger(__name__)

__all__ = ["ViewMethod", "observe", "subscribe_url", "unsubscribe", "user_key"]

#: A view method @reactive wraps: (view, request, *args, **kwargs) -> Response.
ViewMethod = Callable[..., Response]

#: Set on a socket's subscribe request to the version the client holds (resume).
_RESUME_ATTRIBUTE = "reactive_since"


def user_key(user: AbstractBaseUser | AnonymousUser | None) -> str:
    """How a user is recorded on subscribers: its pk, or "" when anonymous."""
    if user is None or not getattr(user, "is_authenticated", False):
        return ""
    return str(user.pk)


def observe(
    viewset: APIView,
    request: Request,
    method: ViewMethod,
    options: ReactiveOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Response:
    """Answer an observing GET: run the view, register the subscription, join the group."""
    try:
        return _observe(viewset, request, method, options, args, kwargs)
    except (redis.RedisError, OSError) as exc:
        raise StoreUnavailable() from exc


def _primary_key(viewset: APIView, options: ReactiveOptions) -> str:
    if options.primary_key:
        return options.primary_key
    try:
        model = viewset.get_queryset().model  # type: ignore[attr-defined]  # AttributeError: no queryset
    except Exception as exc:
        raise ViewMisconfigured(
            f"{type(viewset).__name__} has no queryset to take a primary key from; "
            f"pass @reactive(primary_key='<field>')."
        ) from exc
    return str(model._meta.pk.name)


def _strip_observe(request: Request) -> None:
    query: QueryDict = request._request.GET.copy()
    query.pop(OBSERVE_PARAM, None)
    query._mutable = False
    request._request.GET = query  # type: ignore[assignment]  # immutable again, as Django's
    # Pagination links are built from META: keep the subscriber id out of them.
    request._request.META["QUERY_STRING"] = query.urlencode()


def _observe(
    viewset: APIView,
    request: Request,
    method: ViewMethod,
    options: ReactiveOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Response:
    sid = request.query_params.get(OBSERVE_PARAM, "")
    if not SUBSCRIBER_ID.fullmatch(sid):
        raise ValidationError(
            {OBSERVE_PARAM: ["Malformed subscriber id: use 8-64 letters, digits, '-' or '_'."]}
        )
    user = user_key(request.user)
    spec = ObserverSpec.build(
        view=view_path(viewset),
        action=getattr(viewset, "action", None) or str(request.method).lower(),
        path=request._request.path_info,
        query=[(k, v) for k, values in request.query_params.lists() for v in values],
        kwargs=kwargs,
        user=user if options.per_user else None,
        host=request.get_host(),
        secure=request.is_secure(),
        primary_key=_primary_key(viewset, options),
    )
    oid = spec.id
    subscriber, subscribed = _admit(request, sid, user, oid, options)
    _strip_observe(request)
    if subscribed:
        joined = _join_current(request, spec, subscriber, options)
        if joined is not None:
            return joined
    deadline = time.monotonic() + reactive_settings.LOCK_WAIT
    pause = _LOCK_POLL[0]
    while True:
        # Whoever holds the lock (an evaluation, or the subscribe that creates the
        # observer) may leave the result current: then the waiters need not take it in
        # turn, so many subscribes to one observer do not queue behind each other.
        current = _current(viewset, request, method, args, kwargs, spec, subscriber, options)
        if current is not None:
            return current
        try:
            with locks.observer_lock(oid, wait=0) as held:
                response = _current(
                    viewset, request, method, args, kwargs, spec, subscriber, options, holding=True
                )
                if response is None:
                    # Until its dependencies are stored, any committed write must reach
                    # this observer: the running view may already have read past it.
                    locks.watch(oid, reactive_settings.EVALUATION_TIME_LIMIT + 5)
                    try:
                        response = _subscribe_locked(
                            viewset, request, method, args, kwargs, spec, subscriber, user, options
                        )
                    finally:
                        locks.unwatch(oid)
            break
        except ObserverBusy as exc:
            if time.monotonic() > deadline:
                raise StoreUnavailable(str(exc)) from exc
            time.sleep(pause)
            pause = min(pause * 2, _LOCK_POLL[1])
        except ObserverError as exc:
            raise StoreUnavailable(str(exc)) from exc
    if held.changed_meanwhile:
        enqueue_evaluation(oid)
    else:
        observer.announce_settled(oid)
    return response


#: Seconds between two looks at a locked observer by a waiting subscribe: the first
#: pause, doubling up to the last. Many subscribes wait on one observer while its
#: first evaluation runs; looking every 5 ms, they would take the CPU it needs.
_LOCK_POLL = (0.005, 0.04)


def _current(
    viewset: APIView,
    request: Request,
    method: ViewMethod,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    spec: ObserverSpec,
    subscriber: subscribers.Subscriber,
    options: ReactiveOptions,
    *,
    holding: bool = False,
) -> Response | None:
    """The answer from the stored result if it is current (``_subscribe_current``), else
    None. ``holding``: the caller holds the observer's lock."""
    if options.per_user:
        return _subscribe_current(request, spec, subscriber, options, holding=holding)
    # A shared observer's result must equal the subscriber's own answer: the view runs
    # as the subscriber and is compared with the stored one. Looked at first, so a
    # busy or missing observer does not cost a view run before the locked path's.
    if not locks.idle(spec.id, holding=holding, stored=True):
        return None
    response = method(viewset, request, *args, **kwargs)
    if getattr(response, "status_code", 500) != 200:
        return response
    own = result_from_response(response)
    return _subscribe_current(request, spec, subscriber, options, own, holding=holding)


def _admit(
    request: Request, sid: str, user: str, oid: str, options: ReactiveOptions
) -> tuple[subscribers.Subscriber, bool]:
    """The live subscriber ``sid`` of ``user``, if it may subscribe to ``oid`` now, and
    whether it is subscribed already: a per-user observer found current in the same
    round trip (``limits.admit``), which then needs only its group joined."""
    address = request.META.get("REMOTE_ADDR", "")
    admission = limits.admit(sid, user, oid, address=address if options.per_user else None)
    if admission.refused == "unknown":
        # Another user's id gets the answer an unknown one does: ids are not probed here.
        raise ValidationError(
            {OBSERVE_PARAM: ["Unknown subscriber id: open the WebSocket ws/<id> first."]}
        )
    if admission.refused == "rate":
        raise Throttled(
            detail=f"At most {reactive_settings.SUBSCRIBE_RATE:g} subscribe requests a second "
            "per subscriber; try again shortly."
        )
    if admission.refused == "subscriptions":
        held = reactive_settings.MAX_SUBSCRIPTIONS
        raise Throttled(
            detail=f"A subscriber may hold {held} subscriptions; unsubscribe first.",
            code=TOO_MANY_SUBSCRIPTIONS,
        )
    assert admission.subscriber is not None  # admitted
    if not admission.owner_follows and not limits.allow_observer(user, address, oid):
        raise Throttled(
            detail=f"At most {reactive_settings.MAX_OBSERVERS_PER_USER} distinct live queries "
            "per user (or, signed out, per address); reuse or close some first."
        )
    return admission.subscriber, admission.subscribed


def _subscribe_locked(
    viewset: APIView,
    request: Request,
    method: ViewMethod,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    spec: ObserverSpec,
    subscriber: subscribers.Subscriber,
    user: str,
    options: ReactiveOptions,
) -> Response:
    oid = spec.id
    with capture_tables() as tables:
        response = method(viewset, request, *args, **kwargs)
    if getattr(response, "status_code", 500) != 200:
        return response
    result = result_from_response(response)
    result.tables = tables
    if not options.per_user:
        result = _shared_result(spec, result, user)
    stored = observers.load(oid)
    # Subscribe first: a concurrent last unsubscribe then finds a member and keeps the observer.
    if not subscribers.subscribe(oid, subscriber.id):
        raise NotFound("The subscriber's socket closed during the subscription.")
    try:
        # Existing subscribers get the catch-up diff before the new socket joins the group.
        version = observer.publish(
            oid,
            spec,
            result,
            stored=stored,
            creator=user,
            declared=tables_for(options.dependencies),
            joining=subscriber.channel,
        )
    except ValueError as exc:
        subscribers.unsubscribe(oid, subscriber.id)
        raise ViewMisconfigured(str(exc)) from exc
    except ChannelFull as exc:
        subscribers.unsubscribe(oid, subscriber.id)
        raise _busy(subscriber) from exc
    assert version is not None  # only workers' publishes can find the observer gone
    if stored is None:
        invalidation.record(oid, spec, viewset)
    if options.poll_interval is not None:
        # After subscribe: beat's claim drops entries of observers without subscribers.
        schedule.schedule(oid, options.poll_interval)
    if subscribers.get(subscriber.id) is None:
        subscribers.unsubscribe(oid, subscriber.id)
        raise NotFound("The subscriber's socket closed during the subscription.")
    return _answer(request, spec, version, result.meta, result.items, replayable=bool(stored))


def _subscribe_current(
    request: Request,
    spec: ObserverSpec,
    subscriber: subscribers.Subscriber,
    options: ReactiveOptions,
    own: Result | None = None,
    *,
    holding: bool = False,
) -> Response | None:
    """Subscribe to an observer whose stored result is current: no evaluation, no lock
    (or the caller's: ``holding``).

    The view's permission and throttle checks already ran (DRF's ``initial``), as
    the subscriber. A per-user observer's stored result is this user's; a shared
    one's must equal ``own``, the view's answer to this subscriber, read before the
    observer was found idle (so no write committed before that answer is left
    unevaluated), and compared before the socket joins anything: a view that
    depends on the user never lets the socket in. The socket joins before the
    result it is answered is read, so a diff published in between reaches it as
    a version it already holds (clients skip those) rather than being missed.
    None: take the locked path (evaluation owed, no observer, a different result).
    """
    oid = spec.id
    if own is None:
        subscribed = subscribers.subscribe_if_current(oid, subscriber.id, holding=holding)
        if subscribed is None:
            return None
    else:
        if not locks.idle(oid, holding=holding):
            return None
        found = observers.load(oid)
        if found is None or own.items != found.items or own.meta != found.meta:
            return None  # gone, changed meanwhile, or the view depends on the user
        subscribed = subscribers.subscribe(oid, subscriber.id)
    if not subscribed:
        raise NotFound("The subscriber's socket closed during the subscription.")
    return _join_current(request, spec, subscriber, options)


def _join_current(
    request: Request,
    spec: ObserverSpec,
    subscriber: subscribers.Subscriber,
    options: ReactiveOptions,
) -> Response | None:
    """Join the group of an observer found current, to which ``subscriber`` is
    subscribed, and answer with its stored result; None: take the locked path."""
    oid = spec.id
    follows, adds = fanout.join(broadcast.group_name(oid), oid, subscriber.channel)
    try:
        broadcast.send(channel_sends=follows, group_adds=adds)
    except ChannelFull as exc:
        subscribers.unsubscribe(oid, subscriber.id)
        raise _busy(subscriber) from exc
    # One round trip: items and version together, and whether the socket is still there.
    stored, live = subscribers.observer_and_live(oid, subscriber.id)
    if stored is None:
        return None  # swept meanwhile: the locked path creates it again
    if options.poll_interval is not None:
        schedule.schedule(oid, options.poll_interval)
    if not live:
        subscribers.unsubscribe(oid, subscriber.id)
        raise NotFound("The subscriber's socket closed during the subscription.")
    return _answer(request, spec, stored.version, stored.meta, stored.items, replayable=True)


def _busy(subscriber: subscribers.Subscriber) -> SocketServerBusy:
    """The refusal of a subscribe whose follow found the socket's process inbox full."""
    logger.warning(
        "Subscribe refused: the channel-layer inbox of %s is full (raise capacity?)",
        fanout.hub_channel(subscriber.channel) or subscriber.channel,
    )
    return SocketServerBusy()


def _answer(
    request: Request,
    spec: ObserverSpec,
    version: int,
    meta: dict[str, Any],
    items: list[dict[str, Any]],
    *,
    replayable: bool,
) -> Response:
    answer: dict[str, Any] = {
        "observer": spec.id,
        "version": version,
        "primary_key": spec.primary_key,
        **meta,
    }
    since = getattr(request._request, _RESUME_ATTRIBUTE, None)
    diffs = observers.replay(spec.id, since, version) if since is not None and replayable else None
    if diffs is not None:
        answer["diffs"] = diffs
    else:
        answer["items"] = items
        if since is not None:
            answer["reset"] = True
    return Response(answer)


def _shared_result(spec: ObserverSpec, own: Result, user: str) -> Result:
    """The shared observer's result, as its one fixed identity sees it.

    The subscriber's own answer must equal it: if it does not, the view depends
    on the user and sharing it would hand one user's rows to another. A view whose
    data moves on its own (a clock, a counter) can differ between two evaluations
    a millisecond apart, so a mismatch is confirmed by evaluating both again
    before the subscribe is refused; a view that depends on the user differs every time.
    """
    for attempt in range(_AGREEMENT_ATTEMPTS):
        try:
            if attempt:
                own = evaluate_spec(spec, user or None)
            shared = evaluate_spec(spec, None, shared=True)
        except Exception as exc:
            raise DependsOnUser(_DEPENDS_ON_USER.format(view=spec.view)) from exc
        if shared.items == own.items and shared.meta == own.meta:
            return shared
    raise DependsOnUser(_DEPENDS_ON_USER.format(view=spec.view))


_AGREEMENT_ATTEMPTS = 3
_DEPENDS_ON_USER = (
    "{view} is @reactive(per_user=False), but its result for you differs from the shared "
    "result: the view depends on the user. Remove per_user=False (the default gives each "
    "user an observer of their own)."
)


def _reactive_method(func: Any) -> Any:
    cls = getattr(func, "cls", None)
    if cls is None:
        return None
    actions = getattr(func, "actions", None)
    name = actions.get("get") if actions else "get"
    method = getattr(cls, name, None) if name else None
    return method if getattr(method, ATTRIBUTE, None) is not None else None


def _credential_refused(func: Any, path: str, authenticator: str | None) -> str | None:
    """Why the view refuses a signed-in socket's credential, or None if it accepts it.

    The credential is the socket's session, or for a ticket socket the class
    that authenticated the ticket's request: the view must hold it (or a subclass).
    """
    initkwargs = getattr(func, "initkwargs", {}) or {}
    classes = initkwargs.get("authentication_classes", func.cls.authentication_classes)
    if authenticator is not None:
        if tickets.accepted(authenticator, classes):
            return None
        names = ", ".join(cls.__name__ for cls in classes) or "none"
        return (
            f"The view at {path} accepts {names} (its authentication_classes), and this "
            f"socket's ticket was issued to a request authenticated by {authenticator}: get "
            "the ticket with credentials the view accepts, or subscribe over HTTP."
        )
    if any(issubclass(cls, SessionAuthentication) for cls in classes):
        return None
    return (
        f"The view at {path} does not accept session authentication (see its "
        "authentication_classes), and a socket is signed in by its session: subscribe "
        "over HTTP with the credentials the view accepts."
    )


def subscribe_url(
    url: str,
    subscriber_id: str,
    user: AbstractBaseUser | AnonymousUser,
    host: str,
    secure: bool,
    since: int | None,
    remote_addr: str = "",
) -> dict[str, Any]:
    """Subscribe ``subscriber_id`` to the view at ``url``; return the answer's data.

    The view runs through DRF's full dispatch as the socket's user, with
    ``?observe=<the socket's subscriber id>``, so permissions, querysets, filters
    and the subscription itself behave exactly as for an HTTP GET. Called in a
    thread by the batched consumer. Raises ``Refused``.
    """
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        raise Refused("bad_url", "url must be a path on this site, e.g. /api/tasks/.")
    try:
        match = resolve(parts.path)
    except Resolver404:
        raise Refused("not_found", f"No view answers {parts.path}.") from None
    if _reactive_method(match.func) is None:
        raise Refused("not_reactive", f"The view at {parts.path} is not @reactive.")
    via_ticket = tickets.authenticator(user)
    if getattr(user, "is_authenticated", False):
        refusal = _credential_refused(match.func, parts.path, via_ticket)
        if refusal is not None:
            raise Refused("forbidden", refusal)
    query = QueryDict(parts.query, mutable=True)
    query.pop(OBSERVE_PARAM, None)
    query_string = "&".join(
        s for s in (query.urlencode(), urlencode({OBSERVE_PARAM: subscriber_id})) if s
    )
    request = GetRequest(parts.path, query_string, host, secure, remote_addr)
    # As AuthenticationMiddleware would from the session; the view's own
    # authentication classes then decide, as they do for HTTP.
    request.user = user  # type: ignore[assignment]
    if via_ticket is not None:
        # The view accepts the ticket's class (checked above) but would find no token here.
        request.run_as(user)
    setattr(request, _RESUME_ATTRIBUTE, since)
    response = match.func(request, *match.args, **match.kwargs)
    status = getattr(response, "status_code", 500)
    data = getattr(response, "data", None)
    if status != 200 or not isinstance(data, dict) or "observer" not in data:
        detail = data.get("detail") if isinstance(data, dict) else None
        precise = CODE_ERRORS.get(str(getattr(detail, "code", "")))
        code = precise or STATUS_ERRORS.get(status, "error")
        raise Refused(code, str(detail or f"The view answered {status}."))
    return dict(data)


def unsubscribe(oid: str, subscriber: subscribers.Subscriber) -> None:
    """End one subscription and take the subscriber's socket out of the group."""
    subscribers.unsubscribe(oid, subscriber.id)
    sends, discards = fanout.unfollow(oid, subscriber.channel)
    broadcast.send(channel_sends=sends, group_discards=discards)
