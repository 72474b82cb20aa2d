"""Probe queries as SQL: each observer's compiled once, many combined into one query.

A probe asks which of several observers' querysets contain any of some primary
keys. Each queryset is compiled once into the SQL of its primary keys (a
``Probe``); ``run`` wraps each as ``SELECT <index> FROM (<probe>) WHERE pk IN
(...)`` and sends them as one UNION ALL per ``PROBE_CHUNK``, so combining costs
no queryset clone and no ORM compile per observer.

Observers of one view differ mostly in their parameters (a group, a user), not
in their SQL. On PostgreSQL and SQLite, probes whose SQL is the same, asked
about the same keys, become one part: their indexes and the parameters that
differ come as a VALUES list, and the SQL reads those from it, so the database
plans one lookup instead of one per observer.

``cached`` keeps an observer's Probe in the worker process for half to all of
``PROBE_CACHE_SECONDS``: building it runs the view's ``get_queryset`` and filter
backends (django-filter makes a FilterSet class and a form per call), most of
a dispatch's time. It is keyed by the observer's spec and the field values of
its user, and never kept when building it ran a query: such SQL may embed rows
that change. What else a queryset's SQL could depend on (the clock, a cache)
is what the setting bounds.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import EmptyResultSet
from django.core.signals import setting_changed
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, QuerySet

from .conf import reactive_settings
from .dependencies import on_every_query

__all__ = ["PROBE_CHUNK", "Probe", "cached", "clear", "compile_probe", "run"]

logger = logging.getLogger(__name__)

#: Probes per compound SELECT: SQLite's default SQLITE_MAX_COMPOUND_SELECT is 500.
PROBE_CHUNK = 400

_TAG = "_reactive_probe"
_ALIAS = "_reactive_rows"
_VALUES = "_reactive_values"
#: Where probes of one shape share a part (the VALUES syntax differs elsewhere).
_VALUES_VENDORS = ("postgresql", "sqlite")
_PLACEHOLDERS = re.compile(r"(%s|%%)")
#: Probes per query from which PostgreSQL's parallel workers are turned off for it.
_SERIAL_FROM = 32
#: Probes one process keeps at most; past it, expired ones go, then all.
_MAX_CACHED = 20_000


@dataclass(frozen=True)
class Probe:
    """The SQL selecting a queryset's primary keys, on database ``db``."""

    db: str
    #: Empty for a queryset that can hold no row (``none()``): it matches nothing.
    sql: str
    params: tuple[Any, ...]
    pk: Field[Any, Any]
    #: The name of the SQL's one column.
    column: str


def compile_probe(queryset: QuerySet[Any]) -> Probe:
    """The probe of an unsliced, uncombined queryset (raises what its compile raises)."""
    db = queryset.db
    pk = queryset.model._meta.pk
    compiler = queryset.order_by().values_list("pk").query.get_compiler(using=db)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:
        sql, params = "", ()
    # Django names the column "pk" in some releases, leaves it the pk's own in others.
    alias = compiler.select[0][2] if len(compiler.select) == 1 else None
    return Probe(db, sql, tuple(params), pk, alias or pk.column)


def run(probes: Sequence[tuple[Probe, Collection[Any]]]) -> set[int]:
    """Indexes of the probes whose rows include any of their primary keys.

    One query per ``PROBE_CHUNK`` probes of a database (one in all for fewer);
    probes without keys, or of querysets that can hold no row, match nothing and
    cost nothing.
    """
    by_db: dict[str, list[tuple[int, Probe, Collection[Any]]]] = {}
    for index, (probe, pks) in enumerate(probes):
        if pks and probe.sql:
            by_db.setdefault(probe.db, []).append((index, probe, pks))
    matched: set[int] = set()
    for db, parts in by_db.items():
        connection = connections[db]
        for start in range(0, len(parts), PROBE_CHUNK):
            chunk = [
                _Part(index, probe, _db_keys(probe, pks, connection))
                for index, probe, pks in parts[start : start + PROBE_CHUNK]
            ]
            matched.update(_run_chunk(connection, chunk))
    return matched


@dataclass(frozen=True)
class _Part:
    index: int
    probe: Probe
    #: The primary keys as the database takes them.
    keys: tuple[Any, ...]


def _db_keys(
    probe: Probe, pks: Collection[Any], connection: BaseDatabaseWrapper
) -> tuple[Any, ...]:
    return tuple(probe.pk.get_db_prep_value(probe.pk.to_python(pk), connection) for pk in pks)


def _run_chunk(connection: BaseDatabaseWrapper, chunk: list[_Part]) -> set[int]:
    grouped = connection.vendor in _VALUES_VENDORS
    if grouped and not connection.in_atomic_block:
        try:
            return _execute(connection, chunk, grouped=True)
        except (DatabaseError, _Unshareable) as exc:
            # A parameter the database types differently in a VALUES list than
            # beside its column: each probe on its own is always right.
            logger.debug(
                "Grouped probe failed (%s: %s); probing one by one", type(exc).__name__, exc
            )
    return _execute(connection, chunk, grouped=False)


def _execute(connection: BaseDatabaseWrapper, chunk: list[_Part], *, grouped: bool) -> set[int]:
    selects: list[str] = []
    params: list[Any] = []
    for members in _shapes(chunk) if grouped else [[part] for part in chunk]:
        sql, args = _select(connection, members)
        selects.append(sql)
        params.extend(args)
    with _serial(connection, len(chunk)), connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(selects), params)
        return {int(row[0]) for row in cursor.fetchall()}


def _shapes(chunk: list[_Part]) -> list[list[_Part]]:
    """The chunk's parts, those that can share one part of the query together."""
    shapes: dict[Any, list[_Part]] = {}
    alone: list[list[_Part]] = []
    for part in chunk:
        probe = part.probe
        try:
            key = (probe.sql, probe.column, part.keys, _kinds(probe.params))
            shapes.setdefault(key, []).append(part)
        except (TypeError, _Unshareable):
            alone.append([part])
    return [*shapes.values(), *alone]


class _Unshareable(Exception):
    pass


#: Parameter types that mean the same in a VALUES list as beside their column.
_SHAREABLE = (bool, int, float, str)


def _kinds(params: tuple[Any, ...]) -> tuple[type, ...]:
    if any(not isinstance(p, _SHAREABLE) for p in params):
        raise _Unshareable
    return tuple(type(p) for p in params)


def _select(connection: BaseDatabaseWrapper, members: list[_Part]) -> tuple[str, list[Any]]:
    """One part of the UNION ALL for ``members``, probes of one shape, and its parameters."""
    quote = connection.ops.quote_name
    first = members[0].probe
    keys = members[0].keys
    rows = f"{quote(_ALIAS)}.{quote(first.column)} IN ({', '.join(['%s'] * len(keys))})"
    if len(members) == 1:
        sql = f"SELECT {int(members[0].index)} AS {quote(_TAG)} FROM ({first.sql}) {quote(_ALIAS)}"
        return f"{sql} WHERE {rows}", [*first.params, *keys]
    pieces = _PLACEHOLDERS.split(first.sql)
    # split() keeps the separators: texts at even positions, "%s" or "%%" at odd ones.
    varying = [
        k
        for k in range(len(first.params))
        if any(m.probe.params[k] != first.params[k] for m in members)
    ]
    values = quote(_VALUES)
    sql_parts: list[str] = []
    constant: list[Any] = []
    position = 0
    for piece in pieces:
        if piece != "%s":
            sql_parts.append(piece)
            continue
        if position in varying:
            sql_parts.append(f"{values}.{quote(f'p{position}')}")
        else:
            sql_parts.append("%s")
            constant.append(first.params[position])
        position += 1
    if position != len(first.params):
        raise _Unshareable  # never: Django's SQL holds one %s per parameter
    row = f"({', '.join(['%s'] * (1 + len(varying)))})"
    table_params = [
        arg for m in members for arg in (m.index, *(m.probe.params[k] for k in varying))
    ]
    columns = [quote(_TAG), *(quote(f"p{k}") for k in varying)]
    listed = ", ".join([row] * len(members))
    if connection.vendor == "postgresql":
        table = f"(VALUES {listed}) {values} ({', '.join(columns)})"
    else:  # SQLite names a VALUES list's columns column1, column2...
        named = ", ".join(f"column{n} AS {column}" for n, column in enumerate(columns, 1))
        table = f"(SELECT {named} FROM (VALUES {listed})) {values}"
    sql = (
        f"SELECT {values}.{quote(_TAG)} FROM {table} WHERE EXISTS "
        f"(SELECT 1 FROM ({''.join(sql_parts)}) {quote(_ALIAS)} WHERE {rows})"
    )
    return sql, [*table_params, *constant, *keys]


@contextmanager
def _serial(connection: BaseDatabaseWrapper, parts: int) -> Iterator[None]:
    """A large probe on PostgreSQL runs without parallel workers.

    Past about a hundred parts the planner gathers the index lookups over two
    workers: twice the time of the same plan run alone, and two worker
    processes started per probe. SET LOCAL keeps the setting to the probe's
    own transaction (not taken inside a caller's, where it would outlive it).
    """
    if connection.vendor != "postgresql" or parts < _SERIAL_FROM or connection.in_atomic_block:
        yield
        return
    with transaction.atomic(using=connection.alias):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        yield


@dataclass(frozen=True)
class _Entry:
    key: tuple[str, str]
    probe: Probe
    expires: float


_cache: dict[str, _Entry] = {}


def cached(
    oid: str,
    spec_json: str,
    user: AbstractBaseUser | AnonymousUser,
    build: Callable[[], QuerySet[Any]],
) -> Probe:
    """The observer's probe, from this process's cache or from ``build()``."""
    ttl = reactive_settings.PROBE_CACHE_SECONDS
    key = (spec_json, _user_state(user))
    now = time.monotonic()
    entry = _cache.get(oid)
    if entry is not None and entry.key == key and entry.expires > now:
        return entry.probe
    ran: list[str] = []
    with on_every_query(ran.append):
        probe = compile_probe(build())
    if ttl > 0 and not ran:
        if len(_cache) >= _MAX_CACHED:
            _evict(now)
        # Spread over half the lifetime: probes built by one dispatch (a worker's first)
        # must not all expire into one later dispatch that builds them all again.
        _cache[oid] = _Entry(key, probe, now + ttl * (0.5 + random.random() / 2))
    else:
        _cache.pop(oid, None)
    return probe


def clear() -> None:
    """Forget every cached probe of this process."""
    _cache.clear()


def _evict(now: float) -> None:
    # A copy: under a threads pool another task may add to the cache meanwhile.
    for oid, entry in list(_cache.items()):
        if entry.expires <= now:
            _cache.pop(oid, None)
    if len(_cache) >= _MAX_CACHED:
        _cache.clear()


def _user_state(user: AbstractBaseUser | AnonymousUser) -> str:
    # A view may filter on any of the user's fields (is_staff, a team): a change rebuilds.
    if not getattr(user, "is_authenticated", False):
        return ""
    fields = cast(AbstractBaseUser, user)._meta.concrete_fields
    return repr([getattr(user, f.attname) for f in fields])


def _clear_on_change(**kwargs: Any) -> None:
    # A probe is built from the URLconf, the views and the databases of its time.
    if kwargs.get("setting") in ("REACTIVE_CELERY", "ROOT_URLCONF", "DATABASES"):
        clear()


setting_changed.connect(_clear_on_change)
