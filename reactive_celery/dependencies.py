"""Which tables an evaluation reads, and which tables a model write touches.

Dependencies are captured from the SQL an evaluation actually runs, so nested
serializers, prefetches and m2m joins are followed without declaring them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from typing import Any

from django.apps import apps
from django.core.signals import setting_changed
from django.db import connections
from django.db.models import Model

from .exceptions import ConfigurationError

__all__ = ["capture_tables", "known_tables", "on_every_query", "tables_for", "tables_of_model"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


@lru_cache(maxsize=1)
def known_tables() -> frozenset[str]:
    """Tables of every installed model, m2m through tables included."""
    return frozenset(model._meta.db_table for model in apps.get_models(include_auto_created=True))


def tables_of_model(model: type[Model]) -> set[str]:
    """Tables a write to ``model`` changes: its own and its concrete parents'."""
    concrete = model._meta.concrete_model or model
    tables = {concrete._meta.db_table}
    tables.update(parent._meta.db_table for parent in concrete._meta.get_parent_list())
    return tables


def tables_for(targets: Iterable[Any]) -> set[str]:
    """Tables named by models, ``"app_label.Model"`` strings or table names."""
    tables: set[str] = set()
    for target in targets:
        if isinstance(target, type) and issubclass(target, Model):
            tables |= tables_of_model(target)
        elif isinstance(target, str) and target in known_tables():
            tables.add(target)
        elif isinstance(target, str) and target.count(".") == 1:
            try:
                tables |= tables_of_model(apps.get_model(target))
            except LookupError:
                raise ConfigurationError(
                    f"Dependency {target!r} is neither an installed model nor a table."
                ) from None
        elif isinstance(target, str):
            tables.add(target)
        else:
            raise ConfigurationError(
                f"Dependency {target!r} must be a model class, 'app_label.Model' or a table name."
            )
    return tables


@contextmanager
def capture_tables() -> Iterator[set[str]]:
    """Collect the known tables named in every query run inside the block, on any database."""
    tables: set[str] = set()
    known = known_tables()

    def record(sql: str) -> None:
        tables.update(name for name in _IDENTIFIER.findall(sql) if name in known)

    with on_every_query(record):
        yield tables


@contextmanager
def on_every_query(seen: Callable[[str], None]) -> Iterator[None]:
    """Call ``seen(sql)`` for every query run inside the block, on any database."""

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen(sql)
        return execute(sql, params, many, context)

    with ExitStack() as stack:
        for alias in connections:
            stack.enter_context(connections[alias].execute_wrapper(record))
        yield


def _clear(**kwargs: Any) -> None:
    if kwargs.get("setting") in ("INSTALLED_APPS", "DATABASES"):
        known_tables.cache_clear()


setting_changed.connect(_clear)
