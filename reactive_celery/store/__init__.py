"""Reactive state in Redis, one module per kind of record.

keys         every key name, one builder each (the schema is its docstring)
connection   the process-wide client and Redis's clock
observers    an observer's result, version, dependencies, replay buffer; dropping it
subscribers  a socket's subscriber id and the observers it follows
locks        queued flags, the evaluation lock, the dirty flag, watched observers
schedule     the polling schedule that beat drains
limits       the subscribe rate and observers per user, on every subscribe
stats        evaluation counts, timings and recent errors
sweep        removing what dead sockets and crashed processes left
scripts      batches of Lua calls in one pipeline, per master on a cluster
"""

__all__: list[str] = []
