"""System checks: ``manage.py check`` names what is misconfigured and how to fix it.

reactive_celery.E001  no channel layer
reactive_celery.E002  the channel layer lives in one process only
reactive_celery.E003  no Celery app
reactive_celery.E004  no Redis URL
reactive_celery.E005  invalid REACTIVE_CELERY settings
reactive_celery.E006  channels_redis hosts keep redis-py's socket timeout
reactive_celery.W001  the broker redelivers waiting retries (visibility_timeout too short)
"""

from __future__ import annotations

from typing import Any

from celery import Celery, _state
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from .conf import reactive_settings
from .exceptions import ConfigurationError

__all__ = ["check_celery", "check_channel_layer", "check_settings"]


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Settings parse, and a Redis URL is set."""
    reactive_settings.reload()
    try:
        url = reactive_settings.REDIS_URL
    except ConfigurationError as exc:
        return [Error(str(exc), id="reactive_celery.E005")]
    if not url:
        return [
            Error(
                "reactive_celery has no Redis to keep observers in.",
                hint="Set REDIS_URL, or REACTIVE_CELERY = {'REDIS_URL': 'redis://host:6379/0'}.",
                id="reactive_celery.E004",
            )
        ]
    return []


@register()
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """A cross-process channel layer is configured, without the idle-socket timeout."""
    try:
        alias = reactive_settings.CHANNEL_LAYER
    except ConfigurationError:
        return []
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    config = layers.get(alias)
    if not config:
        return [
            Error(
                f"CHANNEL_LAYERS has no {alias!r} layer; pushes cannot reach sockets.",
                hint="Configure channels_redis.core.RedisChannelLayer in CHANNEL_LAYERS.",
                id="reactive_celery.E001",
            )
        ]
    backend = config.get("BACKEND", "")
    if backend.endswith("InMemoryChannelLayer"):
        return [
            Error(
                "InMemoryChannelLayer cannot carry messages from Celery workers to ASGI servers.",
                hint="Use channels_redis.core.RedisChannelLayer (or RedisPubSubChannelLayer).",
                id="reactive_celery.E002",
            )
        ]
    errors = []
    for host in (config.get("CONFIG") or {}).get("hosts", []):
        if isinstance(host, dict) and host.get("socket_timeout", 0) is not None:
            errors.append(
                Error(
                    "A channels_redis host leaves redis-py's default socket timeout, "
                    "which drops every socket idle for 5 seconds (channels_redis #422).",
                    hint='Give each host {"address": "redis://...", "socket_timeout": None}.',
                    id="reactive_celery.E006",
                )
            )
            break
        if isinstance(host, str):
            errors.append(
                Error(
                    "A channels_redis host is a plain URL, so redis-py's default socket "
                    "timeout drops every socket idle for 5 seconds (channels_redis #422).",
                    hint='Write hosts as {"address": "redis://...", "socket_timeout": None}.',
                    id="reactive_celery.E006",
                )
            )
            break
    return errors


@register()
def check_celery(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A Celery app exists in this process, so signals can enqueue evaluations."""
    # Celery has no public list of its apps; celery-types does not know this one.
    apps = [app for app in _state._get_active_apps() if app.main != "default"]  # type: ignore[attr-defined]
    if not apps:
        return [
            Error(
                "No Celery app is loaded, so changes cannot be sent to workers.",
                hint="Create one in <project>/celery.py and import it in <project>/__init__.py "
                "(Celery's 'First steps with Django').",
                id="reactive_celery.E003",
            )
        ]
    return [warning for app in apps for warning in _visibility_warnings(app)]


def _visibility_warnings(app: Celery) -> list[CheckMessage]:
    # A retry waits in a worker for up to the lock's lifetime; the Redis and SQS
    # transports redeliver anything unacknowledged for longer than visibility_timeout.
    options = app.conf.broker_transport_options or {}
    timeout = options.get("visibility_timeout")
    try:
        needed = reactive_settings.EVALUATION_TIME_LIMIT + 5
    except ConfigurationError:
        return []
    if timeout is None or timeout > needed:
        return []
    return [
        Warning(
            f"broker_transport_options['visibility_timeout'] ({timeout} s) is not above "
            f"EVALUATION_TIME_LIMIT + 5 s ({needed} s): retries waiting in a worker are "
            "delivered again and again.",
            hint=f"Set visibility_timeout above {needed} seconds (Celery's default is 3600).",
            id="reactive_celery.W001",
        )
    ]
