"""The process-wide Redis client for reactive state, and Redis's clock.

The client is built on first use from ``REDIS_URL`` and dropped when that
setting changes, as Channels drops its layers on ``setting_changed``.
"""

from __future__ import annotations

from typing import Any

import redis
from django.core.signals import setting_changed

from ..conf import reactive_settings
from ..exceptions import ConfigurationError

__all__ = ["client", "now_ms", "reset_client"]

_client: redis.Redis | None = None


def client() -> redis.Redis:
    """The process-wide Redis client for reactive state."""
    global _client
    if _client is None:
        url = reactive_settings.REDIS_URL
        if not url:
            raise ConfigurationError(
                "No Redis for reactive_celery: set REACTIVE_CELERY['REDIS_URL'] or REDIS_URL."
            )
        _client = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
    return _client


def reset_client() -> None:
    """Drop the cached client; the next call connects anew (settings changed)."""
    global _client
    _client = None


def now_ms() -> int:
    """Redis's clock in milliseconds: one clock for every host."""
    seconds, micros = client().time()
    return int(seconds) * 1000 + int(micros) // 1000


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting in ("REACTIVE_CELERY", "REDIS_URL"):
        reset_client()


setting_changed.connect(_reset)
