"""System checks: ``manage.py check`` names what is misconfigured and how to fix it.

reactive_celery.E001  no channel layer
reactive_celery.E002  the channel layer lives in one process only
reactive_celery.E003  no Celery app
reactive_celery.E004  no Redis URL
reactive_celery.E005  invalid REACTIVE_CELERY settings (one error per problem)
reactive_celery.E006  a channels_redis host keeps redis-py's socket timeout
reactive_celery.E007  the Redis URL has no redis://, rediss://, unix://, redis+sentinel://
                      or redis+cluster:// scheme, or a Sentinel/Cluster URL is malformed
reactive_celery.E008  a Celery app has no broker URL
reactive_celery.E009  @reactive(dependencies=...) names no installed model
reactive_celery.E010  CHANGE_SOURCE = "triggers" on a database that is not PostgreSQL
reactive_celery.W001  the broker redelivers waiting retries (visibility_timeout too short)
reactive_celery.W002  workers open a database session per evaluation (no CELERY_DB_REUSE_MAX)
reactive_celery.W003  persistent connections under ASGI: one per request thread, unbounded
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from celery import Celery, _state
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DEFAULT_DB_ALIAS, connections
from django.urls import URLPattern, URLResolver, get_resolver

from .conf import load_settings, reactive_settings
from .dependencies import tables_for
from .exceptions import ConfigurationError
from .options import ATTRIBUTE, ReactiveOptions
from .store.connection import CLUSTER_SCHEME, SENTINEL_SCHEME, parse_url

__all__ = [
    "check_celery",
    "check_change_source",
    "check_channel_layer",
    "check_dependencies",
    "check_settings",
]

#: Schemes redis-py's ``from_url`` accepts; anything else fails at the first request.
_REDIS_SCHEMES = ("redis", "rediss", "unix")

_NO_TIMEOUT = (
    "redis-py's socket timeout (5 s by default) cuts channels_redis's blocking reads "
    "and drops idle sockets (channels_redis #422)"
)


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Settings parse, and a Redis URL with a scheme is set."""
    reactive_settings.reload()
    values, problems = load_settings()
    errors = [
        Error(
            problem,
            hint="Correct REACTIVE_CELERY in settings; docs/settings.md lists every key.",
            id="reactive_celery.E005",
        )
        for problem in problems
    ]
    return errors + _redis_url_errors(values["REDIS_URL"])


def _redis_url_errors(url: Any) -> list[Error]:
    if not url:
        return [
            Error(
                "reactive_celery has no Redis to keep observers in.",
                hint="Set REDIS_URL, or REACTIVE_CELERY = {'REDIS_URL': 'redis://host:6379/0'}.",
                id="reactive_celery.E004",
            )
        ]
    user = getattr(settings, "REACTIVE_CELERY", None)
    from_user = isinstance(user, dict) and user.get("REDIS_URL") is not None
    name = "REACTIVE_CELERY['REDIS_URL']" if from_user else "REDIS_URL"
    if not isinstance(url, str):
        return [
            Error(
                f"{name} must be a URL string, got {type(url).__name__}.",
                hint=f"Set {name} = 'redis://127.0.0.1:6379/0'.",
                id="reactive_celery.E007",
            )
        ]
    if urlsplit(url).scheme in _REDIS_SCHEMES:
        return []
    if urlsplit(url).scheme in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        try:
            parse_url(url)
        except ConfigurationError as error:
            return [
                Error(
                    _redacted(str(error)).replace("REDIS_URL", name, 1),
                    hint=f"Set {name} = 'redis+sentinel://host:26379,host2:26379/mymaster/0' "
                    "or 'redis+cluster://host:7000,host2:7001/' (docs/deployment.md).",
                    id="reactive_celery.E007",
                )
            ]
        return []
    fixed = "redis://" + url.split("://", 1)[-1]
    return [
        Error(
            f"{name} ({_redacted(url)!r}) has no redis://, rediss:// or unix:// scheme; "
            "redis-py refuses it at the first request.",
            hint=f"Set {name} = {_redacted(fixed)!r}.",
            id="reactive_celery.E007",
        )
    ]


@register()
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """A cross-process channel layer is configured, without the idle-socket timeout."""
    alias = load_settings()[0]["CHANNEL_LAYER"]
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    config = layers.get(alias) if isinstance(alias, str) else None
    if not config:
        return [
            Error(
                f"CHANNEL_LAYERS has no {alias!r} layer; pushes cannot reach sockets.",
                hint="Configure channels_redis.core.RedisChannelLayer in CHANNEL_LAYERS.",
                id="reactive_celery.E001",
            )
        ]
    backend = config.get("BACKEND", "")
    if backend.endswith("InMemoryChannelLayer"):
        return [
            Error(
                "InMemoryChannelLayer cannot carry messages from Celery workers to ASGI servers.",
                hint="Use channels_redis.core.RedisChannelLayer.",
                id="reactive_celery.E002",
            )
        ]
    if backend.endswith("RedisPubSubChannelLayer"):
        return [
            Error(
                "RedisPubSubChannelLayer drops every message for a process that is not "
                "subscribed at that instant and adds channels to groups only in the process "
                "that receives them: subscribes fail and diffs sent across a reconnect are "
                "lost without a version gap to show it.",
                hint="Use channels_redis.core.RedisChannelLayer (docs/deployment.md).",
                id="reactive_celery.E011",
            )
        ]
    options = config.get("CONFIG") or {}
    if not backend.startswith("channels_redis.") and "hosts" not in options:
        return []  # a layer of another kind: its hosts are not channels_redis's
    return _host_errors(f"CHANNEL_LAYERS[{alias!r}]['CONFIG']['hosts']", options.get("hosts"))


def _host_errors(where: str, hosts: Any) -> list[Error]:
    # Every form channels_redis.utils.decode_hosts accepts, as create_pool connects it.
    if not hosts:
        return [
            Error(
                f"{where} is not set, so channels_redis connects to redis://localhost:6379 "
                f"with redis-py's default socket timeout: {_NO_TIMEOUT}.",
                hint=f"Set {where} = "
                "[{'address': 'redis://localhost:6379', 'socket_timeout': None}].",
                id="reactive_celery.E006",
            )
        ]
    if isinstance(hosts, (str, bytes)):
        url = hosts.decode() if isinstance(hosts, bytes) else hosts
        return [
            Error(
                f"{where} is one string, not a list: channels_redis refuses it, and a "
                f"URL cannot turn the socket timeout off ({_NO_TIMEOUT}).",
                hint=f"Set {where} = [{_shown(_fixed_host(url))}].",
                id="reactive_celery.E006",
            )
        ]
    errors = []
    for index, host in enumerate(hosts):
        reason = _timeout_kept(host)
        if reason is None:
            continue
        errors.append(
            Error(
                f"{where}[{index}] ({_described(host)}) {reason}: {_NO_TIMEOUT}.",
                hint=f"Write this host as {_shown(_fixed_host(host))}.",
                id="reactive_celery.E006",
            )
        )
    return errors


def _timeout_kept(host: Any) -> str | None:
    """Why ``host`` connects with a socket timeout, or None when it has none."""
    if isinstance(host, (tuple, list)):
        if len(host) < 2:
            return None  # channels_redis cannot connect it at all; not a timeout problem
        return "is a (host, port) pair, which cannot set socket_timeout"
    if isinstance(host, (str, bytes)):
        return "is a URL string, which cannot set socket_timeout to None"
    if not isinstance(host, dict):
        return None  # channels_redis cannot connect it at all; not a timeout problem
    address = host.get("address")
    in_url = _url_timeout(address) if isinstance(address, str) else None
    if in_url is not None:
        # redis-py's from_url lets the query string win over keyword arguments.
        return f"sets socket_timeout={in_url} in its URL, which overrides the dict"
    if "socket_timeout" not in host:
        return "keeps redis-py's default socket timeout (5 s)"
    if host["socket_timeout"] is not None:
        return f"sets socket_timeout={host['socket_timeout']!r}, not None"
    return None


def _fixed_host(host: Any) -> dict[str, Any]:
    """``host`` as channels_redis would connect it, with the socket timeout off."""
    if isinstance(host, (tuple, list)):
        return {"host": host[0], "port": host[1], "socket_timeout": None}
    if isinstance(host, bytes):
        host = host.decode()
    if isinstance(host, str):
        return {"address": _without_timeout(host), "socket_timeout": None}
    fixed = {**host, "socket_timeout": None}
    if isinstance(fixed.get("address"), str):
        fixed["address"] = _without_timeout(fixed["address"])
    return fixed


def _url_timeout(url: str) -> str | None:
    return dict(parse_qsl(urlsplit(url).query)).get("socket_timeout")


def _without_timeout(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, True) if k != "socket_timeout"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _described(host: Any) -> str:
    if isinstance(host, dict):
        if "address" in host:
            return repr(_redacted(str(host["address"])))
        if "master_name" in host:
            return f"sentinel master {host['master_name']!r}"
        return f"{host.get('host', 'localhost')}:{host.get('port', 6379)}"
    return _shown(host)


def _shown(host: Any) -> str:
    """``repr(host)`` with passwords masked: check output ends up in CI logs."""
    if isinstance(host, str):
        return repr(_redacted(host))
    if isinstance(host, dict):
        shown = {
            key: "***" if key == "password" else _redacted(value) if key == "address" else value
            for key, value in host.items()
        }
        kwargs = shown.get("sentinel_kwargs")
        if isinstance(kwargs, dict) and "password" in kwargs:
            shown["sentinel_kwargs"] = {**kwargs, "password": "***"}
        return repr(shown)
    return repr(host)


def _redacted(url: Any) -> Any:
    return re.sub(r"(?<=:)[^:@/]+(?=@)", "***", url) if isinstance(url, str) else url


@register()
def check_celery(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A Celery app exists in this process, with a broker, so signals can enqueue evaluations."""
    # Celery has no public list of its apps; celery-types does not know this one.
    apps = [app for app in _state._get_active_apps() if app.main != "default"]  # type: ignore[attr-defined]
    if not apps:
        return [
            Error(
                "No Celery app is loaded, so changes cannot be sent to workers.",
                hint="Create one in <project>/celery.py and import it in <project>/__init__.py "
                "(Celery's 'First steps with Django').",
                id="reactive_celery.E003",
            )
        ]
    # Evaluations are sent by the current app (shared_task); other apps may exist beside it.
    current = _state.get_current_app()
    sender = current if current.main != "default" else apps[0]
    messages = _broker_errors(sender)
    messages += [warning for app in apps for warning in _visibility_warnings(app)]
    return messages + _reuse_warnings(sender) + _asgi_connection_warnings()


def _server_databases() -> dict[str, dict[str, Any]]:
    # SQLite opens a file, not a session: reuse gains little and costs nothing to skip.
    return {
        alias: db
        for alias, db in settings.DATABASES.items()
        if "sqlite" not in str(db.get("ENGINE", ""))
    }


def _reuse_warnings(app: Celery) -> list[CheckMessage]:
    # Celery's Django fixup closes every connection before and after each task unless
    # CELERY_DB_REUSE_MAX is set, whatever CONN_MAX_AGE says.
    databases = _server_databases()
    if not databases or app.conf.get("CELERY_DB_REUSE_MAX") or app.conf.get("db_reuse_max"):
        return []
    return [
        Warning(
            f"Celery app {app.main!r} closes the database connection around every task: "
            f"each evaluation opens a new session to {', '.join(sorted(databases))}.",
            hint="Set CELERY_DB_REUSE_MAX = 100 in settings: each worker process keeps "
            "its connection for 100 tasks (docs/deployment.md, 'Database connections').",
            id="reactive_celery.W002",
        )
    ]


def _asgi_connection_warnings() -> list[CheckMessage]:
    if not getattr(settings, "ASGI_APPLICATION", None):
        return []
    persistent = sorted(
        alias
        for alias, db in _server_databases().items()
        if db.get("CONN_MAX_AGE", 0) != 0 and not (db.get("OPTIONS") or {}).get("pool")
    )
    if not persistent:
        return []
    return [
        Warning(
            f"CONN_MAX_AGE is not 0 for {', '.join(persistent)} under ASGI: every thread "
            "that runs a request keeps a connection open, and the database runs out of them.",
            hint="Set CONN_MAX_AGE = 0 (workers keep theirs with CELERY_DB_REUSE_MAX), or on "
            "Django 5.1+ with psycopg 3 a pool: OPTIONS = {'pool': {'max_size': 4}}.",
            id="reactive_celery.W003",
        )
    ]


def _broker_errors(app: Celery) -> list[CheckMessage]:
    # Unset, Celery falls back to amqp://guest@localhost// and every enqueue fails there.
    if app.conf.broker_write_url:
        return []
    return [
        Error(
            f"Celery app {app.main!r} has no broker_url, so it would send evaluations "
            "to amqp://guest@localhost//.",
            hint="Set CELERY_BROKER_URL = 'redis://host:6379/1' in settings, read with "
            "app.config_from_object('django.conf:settings', namespace='CELERY').",
            id="reactive_celery.E008",
        )
    ]


def _visibility_warnings(app: Celery) -> list[CheckMessage]:
    # A retry waits in a worker for up to the lock's lifetime; the Redis and SQS
    # transports redeliver anything unacknowledged for longer than visibility_timeout.
    options = app.conf.broker_transport_options or {}
    timeout = options.get("visibility_timeout")
    try:
        needed = reactive_settings.EVALUATION_TIME_LIMIT + 5
    except ConfigurationError:
        return []
    if timeout is None or timeout > needed:
        return []
    return [
        Warning(
            f"broker_transport_options['visibility_timeout'] ({timeout} s) is not above "
            f"EVALUATION_TIME_LIMIT + 5 s ({needed} s): retries waiting in a worker are "
            "delivered again and again.",
            hint=f"Set visibility_timeout above {needed} seconds (Celery's default is 3600).",
            id="reactive_celery.W001",
        )
    ]


@register(Tags.database)
def check_change_source(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """The triggers change source needs PostgreSQL; elsewhere nothing would notify."""
    values, _ = load_settings()
    vendor = connections[DEFAULT_DB_ALIAS].vendor
    if values["CHANGE_SOURCE"] != "triggers" or vendor == "postgresql":
        return []
    return [
        Error(
            f"REACTIVE_CELERY['CHANGE_SOURCE'] is 'triggers' but the default database is "
            f"{vendor}: Django's receivers are off and no trigger exists, so no write "
            "reaches an observer.",
            hint="Use 'signals' on this database, or move it to PostgreSQL.",
            id="reactive_celery.E010",
        )
    ]


@register(Tags.urls)
def check_dependencies(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Every ``@reactive(dependencies=...)`` of a routed view names installed models."""
    if not getattr(settings, "ROOT_URLCONF", None):
        return []
    errors = []
    for path, options in _reactive_methods(get_resolver().url_patterns):
        try:
            tables_for(options.dependencies)
        except ConfigurationError as exc:
            errors.append(
                Error(
                    f"{path}: {exc} Every subscribe to this view fails.",
                    hint="Name each dependency as 'app_label.Model' of an installed app, "
                    "a model class or a table name.",
                    id="reactive_celery.E009",
                )
            )
    return errors


def _reactive_methods(patterns: Iterable[Any]) -> Iterator[tuple[str, ReactiveOptions]]:
    """Each decorated method of a routed view once, with the dotted path of its first view."""
    seen: set[Any] = set()
    for cls in dict.fromkeys(_view_classes(patterns)):  # routes share classes: once each
        for name in dir(cls):
            method = inspect.getattr_static(cls, name, None)
            options = getattr(method, ATTRIBUTE, None)
            if isinstance(options, ReactiveOptions) and method not in seen:
                seen.add(method)
                yield f"{cls.__module__}.{cls.__qualname__}.{name}", options


def _view_classes(patterns: Iterable[Any]) -> Iterator[type]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _view_classes(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            # DRF's as_view() sets .cls, Django's sets .view_class.
            callback = pattern.callback
            cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
            if isinstance(cls, type):
                yield cls
