"""The ``REACTIVE_CELERY`` settings dict, read lazily with defaults.

    REACTIVE_CELERY = {
        "REDIS_URL": "redis://localhost:6379/0",   # default: settings.REDIS_URL
        "KEY_PREFIX": "rc",
    }

Values are read on first access and re-read when ``setting_changed`` fires,
so tests may use ``override_settings``.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

from .exceptions import ConfigurationError

__all__ = [
    "CHANGE_SOURCES",
    "DEFAULTS",
    "ReactiveSettings",
    "load_settings",
    "lock_ttl_ms",
    "queued_ttl",
    "reactive_settings",
]

DEFAULTS: dict[str, Any] = {
    # Redis that holds observers, subscribers and results. None: settings.REDIS_URL.
    "REDIS_URL": None,
    # Every key this package writes starts with this prefix.
    "KEY_PREFIX": "rc",
    # Seconds a subscriber lives without a heartbeat from its socket.
    "SUBSCRIBER_TTL": 120,
    # Seconds between a socket's heartbeats; well under SUBSCRIBER_TTL.
    "HEARTBEAT_INTERVAL": 30,
    # Seconds an observer's state lives without a subscriber renewing it.
    "OBSERVER_TTL": 600,
    # Evaluations slower than this many seconds are logged as warnings.
    "SLOW_EVALUATION": 1.0,
    # Hard limit in seconds for one evaluation; over it the observer is stopped.
    "EVALUATION_TIME_LIMIT": 30,
    # Results with more items than this are logged as warnings.
    "LARGE_RESULT": 1000,
    # Celery queue for evaluate tasks; None: the app's default queue.
    "QUEUE": None,
    # Channel layer alias used to reach sockets.
    "CHANNEL_LAYER": "default",
    # Seconds an HTTP subscribe waits for an evaluation in progress to finish.
    "LOCK_WAIT": 10.0,
    # Diffs kept per observer so a reconnecting client can catch up without a reset.
    "REPLAY_BUFFER": 100,
    # Subscriptions one socket may hold at once.
    "MAX_SUBSCRIPTIONS": 100,
    # Largest client frame accepted, in bytes.
    "MAX_FRAME_BYTES": 65536,
    # Subscribe requests one subscriber may make per second, over HTTP or its socket.
    "SUBSCRIBE_RATE": 20,
    # Frames of any kind one batched socket may send per second (burst of the same size).
    "FRAME_RATE": 50,
    # Sockets open at once per signed-in user, and per client address.
    "MAX_SOCKETS_PER_USER": 50,
    "MAX_SOCKETS_PER_ADDRESS": 200,
    # Distinct observers the live sockets of one user (signed out: one address) may follow.
    "MAX_OBSERVERS_PER_USER": 500,
    # Seconds between beat's sweeps of expired subscribers and abandoned observers.
    "SWEEP_INTERVAL": 30,
    # Seconds a socket ticket (POST <prefix>/ticket) may be presented after it was issued.
    "TICKET_TTL": 60,
    # Record Prometheus metrics (when prometheus-client is installed).
    "METRICS": True,
    # Who may read metrics_view: client addresses or networks, and/or a bearer token.
    "METRICS_ALLOWED_IPS": ["127.0.0.1", "::1"],
    "METRICS_TOKEN": None,
    # What tells observers of writes: "signals" (Django's, plus notify()) or "triggers"
    # (PostgreSQL triggers read by manage.py reactive_listen; Django's receivers stay off).
    "CHANGE_SOURCE": "signals",
    # A write to rows of a view's own model re-evaluates only the observers those rows
    # concern (their last result held one, or their query would now); False: every
    # observer of the table, as for any other table the view reads.
    "PRECISE_INVALIDATION": True,
    # Seconds a worker process reuses an observer's probe query (built by running its
    # view's get_queryset and filters) before building it anew; 0: build it every time.
    "PROBE_CACHE_SECONDS": 30,
    # A commit hands what it wrote to a thread of its process, which asks Redis for the
    # dependent observers and sends their tasks: the save never waits for either.
    # False: the committing thread does both before the commit's caller goes on.
    "SEND_IN_BACKGROUND": True,
}

#: The values CHANGE_SOURCE may take.
CHANGE_SOURCES = ("signals", "triggers")

_POSITIVE_NUMBERS = (
    "SUBSCRIBER_TTL",
    "HEARTBEAT_INTERVAL",
    "OBSERVER_TTL",
    "SLOW_EVALUATION",
    "EVALUATION_TIME_LIMIT",
    "LARGE_RESULT",
    "LOCK_WAIT",
    "REPLAY_BUFFER",
    "MAX_SUBSCRIPTIONS",
    "MAX_FRAME_BYTES",
    "SUBSCRIBE_RATE",
    "FRAME_RATE",
    "MAX_SOCKETS_PER_USER",
    "MAX_SOCKETS_PER_ADDRESS",
    "MAX_OBSERVERS_PER_USER",
    "SWEEP_INTERVAL",
    "TICKET_TTL",
)


#: Numbers where 0 turns something off.
_NON_NEGATIVE_NUMBERS = ("PROBE_CACHE_SECONDS",)

#: True or False.
_SWITCHES = ("PRECISE_INVALIDATION", "SEND_IN_BACKGROUND")

#: Limits that count whole things: below 1 they would refuse everything.
_COUNTS = (
    "MAX_SUBSCRIPTIONS",
    "SUBSCRIBE_RATE",
    "FRAME_RATE",
    "MAX_SOCKETS_PER_USER",
    "MAX_SOCKETS_PER_ADDRESS",
    "MAX_OBSERVERS_PER_USER",
)


def load_settings() -> tuple[dict[str, Any], list[str]]:
    """Every value, ``REACTIVE_CELERY`` merged over ``DEFAULTS``, and every problem found.

    Called by ``reactive_settings`` on first access and by the system checks,
    which report each problem on its own. Invalid values are kept as given.
    """
    user = getattr(django_settings, "REACTIVE_CELERY", {}) or {}
    if not isinstance(user, dict):
        return _with_redis_url(dict(DEFAULTS)), ["REACTIVE_CELERY must be a dict of settings."]
    problems = [_unknown_key(key) for key in sorted(set(user) - set(DEFAULTS), key=str)]
    values = {**DEFAULTS, **{key: value for key, value in user.items() if key in DEFAULTS}}
    numbers: set[str] = set()
    for key in _POSITIVE_NUMBERS:
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            problems.append(f"REACTIVE_CELERY['{key}'] must be a positive number, got {value!r}.")
        else:
            numbers.add(key)
    for key in _NON_NEGATIVE_NUMBERS:
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            problems.append(f"REACTIVE_CELERY['{key}'] must be a number >= 0, got {value!r}.")
    for key in _SWITCHES:
        if not isinstance(values[key], bool):
            problems.append(f"REACTIVE_CELERY['{key}'] must be True or False, got {values[key]!r}.")
    for key in _COUNTS:
        if key in numbers and values[key] < 1:
            problems.append(
                f"REACTIVE_CELERY['{key}'] counts requests or sockets and must be at "
                f"least 1, got {values[key]!r}."
            )
    if values["CHANGE_SOURCE"] not in CHANGE_SOURCES:
        problems.append(
            f"REACTIVE_CELERY['CHANGE_SOURCE'] must be one of {', '.join(CHANGE_SOURCES)}, "
            f"got {values['CHANGE_SOURCE']!r}."
        )
    if {"HEARTBEAT_INTERVAL", "SUBSCRIBER_TTL"} <= numbers and values[
        "HEARTBEAT_INTERVAL"
    ] >= values["SUBSCRIBER_TTL"]:
        problems.append(
            "REACTIVE_CELERY['HEARTBEAT_INTERVAL'] must be shorter than "
            "REACTIVE_CELERY['SUBSCRIBER_TTL'], or subscribers expire between heartbeats."
        )
    problems += _metrics_problems(values)
    return _with_redis_url(values), problems


def _metrics_problems(values: dict[str, Any]) -> list[str]:
    problems = []
    if not isinstance(values["METRICS"], bool):
        problems.append(
            f"REACTIVE_CELERY['METRICS'] must be True or False, got {values['METRICS']!r}."
        )
    allowed = values["METRICS_ALLOWED_IPS"]
    if isinstance(allowed, str) or not isinstance(allowed, (list, tuple)):
        problems.append(
            "REACTIVE_CELERY['METRICS_ALLOWED_IPS'] must be a list of addresses or networks, "
            f"e.g. ['10.0.0.0/8'], got {allowed!r}."
        )
    else:
        for entry in allowed:
            try:
                ipaddress.ip_network(entry, strict=False)
            except (TypeError, ValueError):
                problems.append(
                    f"REACTIVE_CELERY['METRICS_ALLOWED_IPS'] holds {entry!r}, which is not an "
                    "address or network such as '10.0.0.0/8'."
                )
    token = values["METRICS_TOKEN"]
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        problems.append(
            "REACTIVE_CELERY['METRICS_TOKEN'] must be None or a string of at least 16 "
            "characters (e.g. secrets.token_urlsafe())."
        )
    return problems


def _unknown_key(key: Any) -> str:
    close = difflib.get_close_matches(str(key), DEFAULTS, n=1)
    known = (
        f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(DEFAULTS))}."
    )
    return f"Unknown REACTIVE_CELERY key {key!r}; {known}"


def _with_redis_url(values: dict[str, Any]) -> dict[str, Any]:
    if values["REDIS_URL"] is None:
        values["REDIS_URL"] = getattr(django_settings, "REDIS_URL", None)
    return values


class ReactiveSettings:
    """Attribute access to ``REACTIVE_CELERY`` merged over ``DEFAULTS``."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        values, problems = load_settings()
        if problems:
            raise ConfigurationError("\n".join(problems))
        return values

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Invalid reactive_celery setting: {name!r}")
        if self._cache is None:
            self._cache = self._load()
        return self._cache[name]

    def reload(self) -> None:
        """Forget cached values; called when Django settings change."""
        self._cache = None


reactive_settings = ReactiveSettings()


def lock_ttl_ms() -> int:
    """Lifetime of an observer's lock: past Celery's hard limit (soft + 2 s), so only
    a dead worker's lock ever expires."""
    return int((float(reactive_settings.EVALUATION_TIME_LIMIT) + 5) * 1000)


def queued_ttl() -> int:
    """Lifetime of a queued flag: a task lost with its broker (a Redis restart)
    must not block its observer for long."""
    return max(30, math.ceil(2 * float(reactive_settings.EVALUATION_TIME_LIMIT)))


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting in ("REACTIVE_CELERY", "REDIS_URL"):
        reactive_settings.reload()


setting_changed.connect(_reload)
