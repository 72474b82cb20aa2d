"""How a view method is observed: the options ``@reactive`` stores on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import import_string

from .dependencies import tables_for

__all__ = ["ATTRIBUTE", "ReactiveOptions", "declared_tables", "options_for"]

#: The attribute ``@reactive`` sets on the methods it wraps.
ATTRIBUTE = "reactive_options"


@dataclass(frozen=True)
class ReactiveOptions:
    """How one view method is observed."""

    dependencies: tuple[Any, ...] = ()
    primary_key: str | None = None
    per_user: bool = True
    poll_interval: float | None = None


def options_for(view: str, action: str) -> ReactiveOptions | None:
    """The options of a decorated method, found from a spec's view path and action."""
    try:
        cls = import_string(view)
    except ImportError:
        return None
    options = getattr(getattr(cls, action, None), ATTRIBUTE, None)
    return options if isinstance(options, ReactiveOptions) else None


def declared_tables(view: str, action: str) -> set[str]:
    """Tables declared with ``dependencies=`` for a spec's view and action."""
    options = options_for(view, action)
    return tables_for(options.dependencies) if options else set()
