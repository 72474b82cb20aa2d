"""Reactive Django REST Framework views, evaluated by Celery and pushed over Channels.

Importing the package touches neither Django nor Celery, so it can be imported
before settings are configured; ``reactive`` and ``notify`` load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "notify", "reactive"]

if TYPE_CHECKING:
    from .decorators import reactive
    from .signals import notify


def __getattr__(name: str) -> Any:
    if name == "reactive":
        from .decorators import reactive

        return reactive
    if name == "notify":
        from .signals import notify

        return notify
    raise AttributeError(f"module 'reactive_celery' has no attribute {name!r}")
