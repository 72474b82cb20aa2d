"""Every exception reactive_celery raises, under one base class.

ReactiveError
 ├── ConfigurationError      settings or decorator usage are wrong
 │    └── ViewMisconfigured  a subscribe found the view unusable (HTTP 500, a JSON detail)
 ├── ObserverError           an observer cannot be evaluated
 │    ├── ObserverGone       its spec no longer resolves (view, user removed)
 │    ├── ObserverForbidden  its user may no longer see the view
 │    └── ObserverBusy       its lock stayed taken past LOCK_WAIT
 ├── ForeignSubscriber       the subscriber id is held by another socket
 ├── TooManySockets          a user or client address holds its cap of sockets
 ├── DependsOnUser           a shared view's result differs per user (HTTP 409)
 ├── Refused                 a socket request is refused; carries the protocol's error code
 └── StoreUnavailable        Redis or the channel layer cannot be reached (HTTP 503)
      └── SocketServerBusy   the socket's process inbox is full (HTTP 503, Retry-After)
"""

from __future__ import annotations

from rest_framework.exceptions import APIException

__all__ = [
    "ConfigurationError",
    "DependsOnUser",
    "ForeignSubscriber",
    "ObserverBusy",
    "ObserverError",
    "ObserverForbidden",
    "ObserverGone",
    "ReactiveError",
    "Refused",
    "SocketServerBusy",
    "StoreUnavailable",
    "TooManySockets",
    "ViewMisconfigured",
]


class ReactiveError(Exception):
    """Base class of every error raised by reactive_celery."""


class ConfigurationError(ReactiveError):
    """Settings or decorator usage are wrong; the message names the fix."""


class ViewMisconfigured(ConfigurationError, APIException):
    """500 with a JSON detail that names the fix, e.g. items without a primary key."""

    status_code = 500
    default_detail = "The observed view is misconfigured for @reactive."
    default_code = "view_misconfigured"


class ObserverError(ReactiveError):
    """An observer could not be evaluated."""


class ObserverGone(ObserverError):
    """The observed view or user no longer exists; the observer must stop."""


class ObserverForbidden(ObserverError):
    """The observing user may no longer see this view."""


class ObserverBusy(ObserverError):
    """The observer's lock stayed taken for longer than ``LOCK_WAIT``."""


class ForeignSubscriber(ReactiveError):
    """The subscriber id is held by another user's socket, or by a live anonymous one."""


class TooManySockets(ReactiveError):
    """A user or client address already holds ``MAX_SOCKETS_PER_*`` sockets."""


class DependsOnUser(ReactiveError, APIException):
    """409: a ``per_user=False`` view answered this user differently from the shared result."""

    status_code = 409
    default_detail = "This view depends on the user and cannot be shared."
    default_code = "depends_on_user"


class Refused(ReactiveError):
    """A socket request this server refuses; becomes one ``error`` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StoreUnavailable(ReactiveError, APIException):
    """503: the reactive store (Redis) or channel layer cannot be reached."""

    status_code = 503
    default_detail = "Live updates are unavailable right now (reactive store unreachable)."
    default_code = "reactive_unavailable"


class SocketServerBusy(StoreUnavailable):
    """503: the ASGI process holding the socket has a full channel-layer inbox.

    Its hub is behind on reading (channels_redis ``capacity``): the subscription
    is undone rather than left without deliveries; the client retries.
    """

    default_detail = "The socket's server is too busy to take a subscription now; retry."
    default_code = "reactive_busy"
    #: DRF's exception handler sends it as ``Retry-After`` (seconds).
    wait = 1
