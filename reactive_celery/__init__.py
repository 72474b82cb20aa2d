"""Reactive Django REST Framework views, evaluated by Celery and pushed over Channels.

Importing the package touches neither Django nor Celery, so it can be imported
before settings are configured; ``reactive`` and ``notify`` load on first use.

The modules, in the order a change flows through them::

    decorators      @reactive: validate options, wrap the view method
    options         ReactiveOptions stored on the method; declared tables
    subscriptions   join / leave an observer: HTTP ?observe=, socket subscribe, unsubscribe
    spec            the JSON description of one observed call; its sha256 is the observer id
    dependencies    the tables an evaluation reads; the tables a write touches
    signals         write -> mark the table and rows -> on commit, queue dependent observers
    invalidation    does a row change concern an observer: its stored keys, one probe query
    tasks           every Celery task: evaluate, poll, sweep
    observer        one observer's life: refresh under its lock, publish, stop
    evaluation      running the observed view in a worker
    diff            the changes between two ordered results
    protocol        the wire format: message types, frames, error and close codes, ids
    broadcast       channel-layer group names and sends
    consumers/      the WebSocket consumers of the seed and batched protocols
    identity        a socket's session and user, checked again over time
    origins         the WebSocket handshake's Origin check
    metrics         Prometheus counters, one call per event; metrics_view serves them
    pg/             PostgreSQL as a change source: triggers, the reactive_listen listener
    store/          every Redis key and script (keys, observers, subscribers, locks, ...)
    conf, checks    settings and system checks; exceptions: every error raised
    apps, beat      ready(): signals, checks, tasks; beat's periodic entries
    worker          worker processes: database connections kept healthy across tasks
    routing, urls, views, status, management/   what a project mounts and runs
    testing/        a private redis-server for test suites and the demo
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
