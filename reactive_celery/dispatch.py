"""A table's probe dispatch: one task decides for all its idle precise observers at once.

On commit, an observer that read no written table but ``T``, whose written
primary keys are known, and that is classified precise on ``T`` (in
``precise:<T>``) is not read or touched: the commit's lookup script pends the
pks and the commit's token for ``T``'s dispatch (one ``dispatch`` task per
table until it starts), so a commit costs the same for one such observer or
a thousand. The dispatch then, in one task:

1. takes everything pended for ``T`` (later commits pend anew and send
   another) and ``T``'s precise observers, the candidates;
2. reads every candidate's busy state and stored result, one round trip;
3. busy candidates take today's path with the pks (``touched``, queued): the
   evaluation under the lock decides, as it does for every other observer;
4. an idle candidate whose stored result holds a pk is queued;
5. the other idle candidates are probed together, one query
   (``probing.run``) as their users: matched ones are queued, the rest
   are left alone (``stats:skipped``);
6. clears ``T``'s pending token, unless a later commit left another, and
   answers the clients that waited for it (``locks.sync``);
7. evaluates the first queued observer itself (the others were sent tasks).

Queued ones get ``T:*`` (decided: the evaluation need not probe again), busy
ones ``T:<pk>``.

Why dropping an idle observer is sound. A write W to row p commits before its
on_commit callback pends it, so the dispatch reads the observer (step 2) and
runs its probe (step 5) after W is committed. At step 2 the observer is idle,
so the stored result is that of an evaluation E that has finished; E read the
database either after W (its result already reflects W) or before W (an
evaluation that began before the commit and released its lock before step 2
looked: W never marked it dirty). In the second case the stored result is the
one from before W: if it does not hold p, p was not in the result before W;
if the probe, run after W, does not match p, p is not in it after W. A change
to row p of ``T`` changes neither, so the result stands. A later write to p
pends again and is decided by the next dispatch. An observer that is busy at
step 2 may be running an evaluation that read before W, or about to start
one: it is left to the lock, exactly as without the dispatch. Until step 6
no precise observer of ``T`` is idle to ``sync`` and subscriptions
(``locks.idle``), so no client hears "caught up" before the decision; step 6
comes after step 3 and 4 marked queued what they found concerned.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet

from . import broadcast, invalidation, metrics, probing, protocol
from .conf import reactive_settings
from .invalidation import Invalidation
from .spec import ObserverSpec
from .store import locks, probes
from .store.locks import ANY

__all__ = ["Decision", "decide", "dispatch", "forget"]

logger = logging.getLogger(__name__)


@dataclass
class Decision:
    """What one dispatch decided: touched entries per observer to queue, and those dropped."""

    owed: dict[str, list[str]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    #: Candidates probed (in one query per ``PROBE_CHUNK``).
    probed: int = 0


def dispatch(
    table: str,
    requeue: Callable[[str], None],
    task: str,
    evaluate_here: Callable[[str], None] | None = None,
) -> Decision:
    """Called by the ``dispatch`` task: decide for everything pended for ``table``.

    ``requeue(oid)`` sends one evaluate task (``tasks.enqueue_evaluation``);
    ``task``: the task's id, under which what it takes is kept until it is done,
    so a redelivery after its worker died decides the same observers.
    ``evaluate_here(oid)``: evaluates one queued observer in this task, once the
    dispatch is done, instead of sending it (see ``_one_to_evaluate_here``).
    """
    started = time.monotonic()
    taken = probes.take(table, task)
    if not taken.pks:
        probes.release(table, task, taken.last, skipped=0, queries=0, decided=False)
        return Decision()  # an earlier dispatch took what this one was sent for
    decision = decide(table, taken.pks, taken.candidates)
    stamp = taken.first.partition("-")[0] if metrics.enabled() else ""
    queued = locks.touch(decision.owed, stamp=stamp)
    here = _one_to_evaluate_here(queued, started) if evaluate_here else None
    for oid in queued:
        if oid != here:
            requeue(oid)
    waited = probes.release(
        table,
        task,
        taken.last,
        skipped=len(decision.dropped),
        queries=-(-decision.probed // probing.PROBE_CHUNK),
    )
    # Clients of the queued ones hear it from the evaluation (``locks.settled``).
    caught_up = [(oid, locks.sync_after_dispatch(oid)) for oid in waited]
    synced = [(oid, version) for oid, version in caught_up if version is not None and version >= 0]
    if synced:
        broadcast.send(
            group_sends=[
                (broadcast.group_name(oid), protocol.synced_message(oid, version))
                for oid, version in synced
            ]
        )
    if here and evaluate_here:
        evaluate_here(here)
    return decision


def _one_to_evaluate_here(queued: list[str], started: float) -> str | None:
    """The queued observer this dispatch evaluates itself, if any.

    Most writes concern one observer: sending it a task would cost a publish and
    a trip through the broker to the next free process, while this one is free
    the moment it is done. It is marked queued like the others, so ``sync`` and
    subscribes wait for it; if this worker dies in it, the sweep requeues it as
    it does any evaluation killed with its worker. Only while the dispatch has
    used little of the time limit the evaluation shares with it.
    """
    if not queued:
        return None
    if time.monotonic() - started > reactive_settings.EVALUATION_TIME_LIMIT / 4:
        return None
    return queued[0]


def decide(table: str, pks: set[str], oids: list[str]) -> Decision:
    """Which of ``oids`` a write of ``pks`` to ``table`` may concern (see the module)."""
    decision = Decision()
    rows = [f"{table}:{pk}" for pk in sorted(pks)]
    if not pks or ANY in pks or not reactive_settings.PRECISE_INVALIDATION:
        decision.owed = {oid: [f"{table}:{ANY}"] for oid in oids}
        return decision
    idle: dict[str, tuple[ObserverSpec, str]] = {}
    # .get: under a threads pool another dispatch may empty the store meanwhile.
    known = {oid: entry for oid in oids if (entry := _KNOWN.get((table, oid))) is not None}
    held = {oid: entry.version for oid, entry in known.items()}
    for candidate in probes.read(oids, held):
        if not candidate.version:
            decision.gone.append(candidate.oid)
            continue
        entry = known[candidate.oid] if candidate.unchanged else _remember(candidate, table)
        if candidate.busy or entry is None:
            decision.owed[candidate.oid] = rows
        elif pks & entry.held:
            decision.owed[candidate.oid] = [f"{table}:{ANY}"]
        else:
            idle[candidate.oid] = (entry.spec, entry.spec_json)
    if idle:
        matched = _probe(table, idle, pks)
        for oid in idle:
            if oid in matched:
                decision.owed[oid] = [f"{table}:{ANY}"]
            else:
                decision.dropped.append(oid)
        decision.probed = len(idle)
    return decision


@dataclass(frozen=True)
class _Known:
    """What a dispatch keeps of a precise observer between dispatches of its process:
    its spec, fixed by its id, and the primary keys its result held at ``version``."""

    version: str
    spec: ObserverSpec
    spec_json: str
    held: frozenset[str]


#: By table and observer id. Its result is read again only when its version moved: a table's
#: observers are read by every dispatch, and most of them did not change since.
_KNOWN: dict[tuple[str, str], _Known] = {}
#: Observers kept, and the largest result kept; past the first, the store is emptied.
_KNOWN_CAP = 10_000
_KNOWN_ROWS = 1_000


def forget() -> None:
    """Forget what this process kept of observers between dispatches."""
    _KNOWN.clear()


def _remember(candidate: probes.Candidate, table: str) -> _Known | None:
    """The candidate as read, kept for the next dispatch; None if it is not (or no
    longer) precise on ``table``: then it is evaluated, and read in full each time."""
    _KNOWN.pop((table, candidate.oid), None)
    spec = _precise_spec(candidate, table)
    if spec is None:
        return None
    entry = _Known(candidate.version, spec, candidate.spec, frozenset(_held(spec, candidate.items)))
    if len(entry.held) <= _KNOWN_ROWS:
        if len(_KNOWN) >= _KNOWN_CAP:
            _KNOWN.clear()
        _KNOWN[table, candidate.oid] = entry
    return entry


def _precise_spec(candidate: probes.Candidate, table: str) -> ObserverSpec | None:
    """The candidate's spec if it is (still) classified precise on ``table``."""
    try:
        how = Invalidation(**json.loads(candidate.invalidation))
        if not how.precise or how.table != table:
            return None
        return ObserverSpec.from_json(candidate.spec)
    except (TypeError, ValueError):
        return None


def _held(spec: ObserverSpec, items_json: str) -> set[str]:
    return {str(item.get(spec.primary_key)) for item in json.loads(items_json or "[]")}


def _probe(table: str, specs: dict[str, tuple[ObserverSpec, str]], pks: set[str]) -> set[str]:
    """The observers whose query matches any of ``pks`` now; all of them if any fails.

    ``specs``: each observer's spec and its JSON as stored (the probe cache's key).
    """
    unknown: set[str] = set()
    try:
        users = invalidation.users(spec for spec, _ in specs.values())
        probes: list[tuple[str, probing.Probe]] = []
        for oid, (spec, spec_json) in specs.items():
            user = users.get(spec.user) if spec.user else AnonymousUser()
            if user is None:
                unknown.add(oid)  # the user is gone: the evaluation stops the observer
                continue
            probes.append((oid, probing.cached(oid, spec_json, user, _builder(spec, user))))
        found = probing.run([(probe, pks) for _, probe in probes])
    except Exception as exc:
        # Evaluating is always correct; the evaluations report the views' own errors.
        logger.info(
            "Probe dispatch for %s fell back to %d evaluations (%s: %s)",
            table,
            len(specs),
            type(exc).__name__,
            exc,
            extra={"table": table},
        )
        return set(specs)
    return unknown | {probes[index][0] for index in found}


def _builder(
    spec: ObserverSpec, user: AbstractBaseUser | AnonymousUser
) -> Callable[[], QuerySet[Any]]:
    return lambda: invalidation.probe_queryset(spec, user)
