"""Lua scripts sent many at a time, on one server or across a cluster's masters.

redis-py's ``Script`` loads itself before a plain pipeline runs, and a cluster
pipeline refuses scripts altogether. ``run_many`` sends each call by SHA: on
one server in one pipeline, on a cluster in one pipeline per master (the calls
grouped by the master of their slot: a round trip per master). A server that
answers NOSCRIPT (it restarted and lost its scripts) gets the script loaded and
only the calls it refused sent again, so no call runs twice; on a cluster any
refused call (NOSCRIPT, or its slot moved) goes again by itself through the
cluster client, which loads the script and follows redirects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

__all__ = ["Call", "run_many"]

#: One call: its keys (all of one slot) and its arguments.
Call = tuple[Sequence[str], Sequence[Any]]

_shas: dict[str, str] = {}


def _sha(r: Any, script: str, *, reload: bool = False) -> str:
    if script not in _shas or reload:
        _shas[script] = str(r.script_load(script))
    return _shas[script]


def run_many(r: Redis, script: str, calls: Sequence[Call]) -> list[Any]:
    """Run ``script`` once per ``(keys, args)`` in one round trip; the answers in order."""
    if not calls:
        return []
    if isinstance(r, RedisCluster):
        return _run_on_cluster(r, script, calls)
    answers: list[Any] = [None] * len(calls)
    pending = list(range(len(calls)))
    for attempt in range(2):
        sha = _sha(r, script, reload=attempt > 0)
        pipe = r.pipeline(transaction=False)
        for index in pending:
            names, args = calls[index]
            pipe.evalsha(sha, len(names), *names, *args)
        refused = []
        for index, answer in zip(pending, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(answer, NoScriptError):
                refused.append(index)
            elif isinstance(answer, Exception):
                raise answer
            else:
                answers[index] = answer
        pending = refused
        if not pending:
            return answers
    raise NoScriptError("Redis refused the script twice.")


def _run_on_cluster(r: RedisCluster, script: str, calls: Sequence[Call]) -> list[Any]:
    by_node: dict[str, list[int]] = {}
    nodes: dict[str, Any] = {}
    for index, (names, _) in enumerate(calls):
        node = r.get_node_from_key(names[0])  # type: ignore[no-untyped-call]
        nodes[node.name] = node
        by_node.setdefault(node.name, []).append(index)
    sha = _sha(r, script)  # SCRIPT LOAD goes to every master
    pipes = {}
    for name, indexes in by_node.items():
        node_client = r.get_redis_connection(nodes[name])
        pipe = node_client.pipeline(transaction=False)
        for index in indexes:
            names, args = calls[index]
            pipe.evalsha(sha, len(names), *names, *args)
        pipes[name] = pipe
    answers: list[Any] = [None] * len(calls)
    for name, pipe in pipes.items():
        for index, answer in zip(by_node[name], pipe.execute(raise_on_error=False), strict=True):
            if isinstance(answer, ResponseError):
                # NOSCRIPT (a restarted master), MOVED or ASK: one call through the
                # cluster client, which loads the script and follows redirects.
                names, args = calls[index]
                answer = r.eval(script, len(names), *names, *args)
            elif isinstance(answer, Exception):
                raise answer
            answers[index] = answer
    return answers
