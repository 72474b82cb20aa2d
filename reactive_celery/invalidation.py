"""Precise invalidation: does a write to some rows concern an observer at all?

    classify   once per observer, when a subscription creates it (``record``): can its
               query be probed, and on which table; if not, the reason (kept in
               the store, shown by ``reactive_status``)
    affects    before an evaluation: whether the touched entries may change its result
    probe_queryset / users   what a table's dispatch (``dispatch``) probes all of its
               observers with, as their users, in one query (``probing``: a UNION
               ALL of each probe tagged with its index)

A table's dispatch decides for every idle precise observer of a commit at
once (``dispatch.py``); ``affects`` decides under the lock for the others.

A change to row p of the observer's primary table (its view's queryset model)
can change a list result only if the last result held p (it changed or left)
or the query now matches p (it entered or changed): anything else is left
as it was. Every other touched table, a whole-table change, or an observer
that cannot be probed means a full evaluation.

Not probed (table-level, with the reason): actions other than ``list``, a
custom ``list`` method, views without ``get_queryset``, raw SQL, combined
(``union``) or sliced querysets, ``distinct()`` with annotations, a
``primary_key`` that is not the model's pk, and paginated views: a row
leaving the filter on an earlier page shifts a later page although the page
never held it. A serializer reading other rows of its own model (a parent
of the same table) is beyond the rule too: turn ``PRECISE_INVALIDATION`` off
for such projects, or declare the view with ``poll_interval``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet
from django.urls import resolve
from rest_framework.mixins import ListModelMixin

from . import probing
from .conf import reactive_settings
from .evaluation import GetRequest, view_path
from .spec import ObserverSpec
from .store import keys, observers
from .store.connection import client
from .store.locks import ANY
from .store.stats import STATS_TTL

__all__ = [
    "FIELD",
    "Invalidation",
    "affects",
    "build_view",
    "classify",
    "probe_queryset",
    "record",
    "users",
]

logger = logging.getLogger(__name__)

#: The observer hash's field holding its ``Invalidation`` (JSON).
FIELD = "invalidation"


@dataclass(frozen=True)
class Invalidation:
    """How one observer is invalidated: precise on ``table``, or table-level for ``reason``."""

    table: str = ""
    reason: str = ""

    @property
    def precise(self) -> bool:
        """Whether a write to rows of ``table`` is decided by the probe."""
        return bool(self.table) and not self.reason


def build_view(spec: ObserverSpec, user: AbstractBaseUser | AnonymousUser) -> Any:
    """The spec's view, set up as for its request (action, kwargs, user), not run."""
    match = resolve(spec.path)
    func: Any = match.func
    if view_path(getattr(func, "cls", None) or func) != spec.view:
        raise LookupError(f"{spec.path} no longer resolves to {spec.view}.")
    view = func.cls(**getattr(func, "initkwargs", {}))
    view.args, view.kwargs = match.args, match.kwargs
    if getattr(func, "actions", None):
        view.action_map = func.actions
    http = GetRequest(spec.path, spec.query_string, spec.host, spec.secure).run_as(user)
    view.request = view.initialize_request(http)
    view.format_kwarg = None
    view.headers = {}
    return view


def _filtered(view: Any) -> QuerySet[Any]:
    queryset = view.filter_queryset(view.get_queryset())
    if not isinstance(queryset, QuerySet):
        raise TypeError(f"the queryset is a {type(queryset).__name__}")
    return queryset


def classify(spec: ObserverSpec, view: Any) -> Invalidation:
    """Whether the observer's query can be probed, on which table, or why not.

    Called once per observer: by the subscription that creates it (``record``),
    else by the first change that needs it. Never raises.
    """
    try:
        return _classify(spec, view)
    except Exception as exc:
        return Invalidation(reason=f"the probe raised {type(exc).__name__}")


def record(oid: str, spec: ObserverSpec, view: Any) -> Invalidation:
    """Classify a new observer from the view that just answered its subscription."""
    found = classify(spec, view)
    _store(oid, found)
    return found


def _store(oid: str, found: Invalidation) -> None:
    observers.note(oid, FIELD, json.dumps(asdict(found)))
    if found.precise:
        observers.mark_precise(oid, found.table)


def _classify(spec: ObserverSpec, view: Any) -> Invalidation:
    if spec.action != "list":
        return Invalidation(reason=f"the {spec.action!r} action is not a list")
    list_method = getattr(getattr(type(view), "list", None), "__wrapped__", None)
    if list_method is not ListModelMixin.list:
        return Invalidation(reason="the view has its own list method")
    if not callable(getattr(view, "get_queryset", None)):
        return Invalidation(reason="the view has no queryset")
    if getattr(view, "paginator", None) is not None:
        return Invalidation(reason="paginated: a row leaving the filter shifts later pages")
    try:
        queryset = _filtered(view)
        table = str(queryset.model._meta.db_table)
        reason = _unprobeable(spec, queryset)
        if not reason:
            # Compiles the probe once, so a query that cannot be probed shows now.
            probing.compile_probe(queryset)
    except Exception as exc:
        return Invalidation(reason=f"the probe raised {type(exc).__name__}")
    if reason:
        return Invalidation(reason=reason)
    return Invalidation(table=table)


def _unprobeable(spec: ObserverSpec, queryset: QuerySet[Any]) -> str:
    query = queryset.query
    if query.combinator:
        return f"a combined ({query.combinator}) queryset"
    if query.is_sliced:
        return "the queryset is sliced"
    if query.distinct and (query.annotations or query.distinct_fields):
        return "distinct() on annotations"
    pk = queryset.model._meta.pk
    if spec.primary_key not in ("pk", pk.name, pk.attname):
        return f"primary_key {spec.primary_key!r} is not the model's primary key"
    return ""


def _user(spec: ObserverSpec) -> AbstractBaseUser | AnonymousUser:
    if spec.user is None or not spec.user:
        return AnonymousUser()
    model = get_user_model()
    user: AbstractBaseUser = model._default_manager.get(pk=model._meta.pk.to_python(spec.user))
    return user


def users(specs: Iterable[ObserverSpec]) -> dict[str, AbstractBaseUser]:
    """The users of per-user specs by their pk (as the spec holds it), in one query;
    a user that no longer exists is missing."""
    wanted = {spec.user for spec in specs if spec.user}
    if not wanted:
        return {}
    model = get_user_model()
    pk = model._meta.pk
    found = model._default_manager.filter(pk__in=[pk.to_python(u) for u in wanted])
    return {str(user.pk): user for user in found}


def probe_queryset(
    spec: ObserverSpec, user: AbstractBaseUser | AnonymousUser | None = None
) -> QuerySet[Any]:
    """The observer's filtered queryset as ``user`` (default: the spec's), for ``probe``."""
    return _filtered(build_view(spec, _user(spec) if user is None else user))


def _rows(touched: Iterable[str], table: str) -> set[str] | None:
    """The primary keys of ``table`` touched, or None when anything else was."""
    rows: set[str] = set()
    for entry in touched:
        written, sep, pk = entry.rpartition(":")
        if not sep or written != table or pk == ANY:
            return None
        rows.add(pk)
    return rows


def affects(oid: str, touched: Collection[str], stored: observers.Observer | None = None) -> bool:
    """Whether the changes in ``touched`` may change the observer's result.

    Called by ``observer.refresh`` under the lock, before evaluating, with the
    ``stored`` observer it evaluates next (else it is read here). Empty
    ``touched`` (no change recorded: a poll, a retry, a subscription's catch-up)
    and anything not decidable mean True; a failing probe means True.
    """
    if not touched or ANY in touched or not reactive_settings.PRECISE_INVALIDATION:
        return True
    try:
        return _affects(oid, touched, stored)
    except Exception as exc:
        # A full evaluation is always correct; it reports the view's own errors.
        logger.info(
            "Observer %s: precise invalidation fell back to an evaluation (%s: %s)",
            oid,
            type(exc).__name__,
            exc,
            extra={"observer": oid},
        )
        return True


def _affects(oid: str, touched: Collection[str], stored: observers.Observer | None) -> bool:
    stored = stored or observers.load(oid)
    if stored is None:
        return True  # gone: evaluate() finds out and does nothing
    spec = ObserverSpec.from_json(stored.spec)
    known = stored.invalidation
    invalidation = Invalidation(**json.loads(known)) if known else None
    if invalidation is None:
        invalidation = classify(spec, build_view(spec, _user(spec)))
        _store(oid, invalidation)
    rows = _rows(touched, invalidation.table) if invalidation.precise else None
    if rows is None:
        return True
    held = {str(item.get(spec.primary_key)) for item in stored.items}
    if rows & held:
        return True
    user = _user(spec)
    found = probing.cached(oid, stored.spec, user, lambda: probe_queryset(spec, user))
    if probing.run([(found, rows)]):
        return True
    pipe = client().pipeline(transaction=False)
    pipe.incr(keys.stats_skipped())
    pipe.expire(keys.stats_skipped(), STATS_TTL)
    pipe.execute()
    return False
