"""Exceptions raised by reactive_celery.

ReactiveError
 ├── ConfigurationError      settings or decorator usage are wrong
 ├── ObserverError           an observer cannot be evaluated
 │    └── ObserverGone       its spec no longer resolves (view, user removed)
 └── SubscriptionError       a subscribe/unsubscribe request is refused
      ├── UnknownSubscriber
      ├── UnknownObserver
      └── ForeignSubscriber  the subscriber belongs to another user
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ForeignSubscriber",
    "ObserverError",
    "ObserverGone",
    "ReactiveError",
    "SubscriptionError",
    "UnknownObserver",
    "UnknownSubscriber",
]


class ReactiveError(Exception):
    """Base class of every error raised by reactive_celery."""


class ConfigurationError(ReactiveError):
    """Settings or decorator usage are wrong; the message names the fix."""


class ObserverError(ReactiveError):
    """An observer could not be evaluated."""


class ObserverGone(ObserverError):
    """The observed view or user no longer exists; the observer must stop."""


class SubscriptionError(ReactiveError):
    """A subscription request was refused."""

    status_code = 400


class UnknownSubscriber(SubscriptionError):
    """No live WebSocket holds this subscriber id."""


class UnknownObserver(SubscriptionError):
    """No observer has this id."""

    status_code = 404


class ForeignSubscriber(SubscriptionError):
    """The subscriber id belongs to another user's socket."""

    status_code = 403
