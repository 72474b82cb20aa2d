"""The process-wide Redis client for reactive state, and Redis's clock.

The client is built on first use from ``REDIS_URL`` and dropped when that
setting changes, as Channels drops its layers on ``setting_changed``. Three
URL forms name three topologies::

    redis://[:password@]host:6379/0       one server (also rediss://, unix://)
    redis+sentinel://[:password@]host:26379,host2:26379/mymaster/0
                                          the master Sentinel names, followed across failovers
    redis+cluster://[:password@]host:7000,host2:7001/
                                          Redis Cluster (database 0 only)

Sentinel and Cluster clients are redis-py's own (``redis.sentinel.Sentinel``,
``redis.cluster.RedisCluster``); the password, if any, is the data servers'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
from django.core.signals import setting_changed
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from ..conf import reactive_settings
from ..exceptions import ConfigurationError

__all__ = [
    "CLUSTER_SCHEME",
    "SENTINEL_SCHEME",
    "Topology",
    "client",
    "now_ms",
    "parse_url",
    "reset_client",
]

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"

#: Schemes redis-py's ``from_url`` accepts as they are.
_PLAIN_SCHEMES = ("redis", "rediss", "unix")

_client: redis.Redis | None = None


@dataclass(frozen=True)
class Topology:
    """What a ``REDIS_URL`` names: one server, a Sentinel-watched master, or a cluster."""

    kind: str  # "single", "sentinel" or "cluster"
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    master: str = ""
    db: int = 0
    password: str | None = None


def _masked(url: str) -> str:
    # Error messages end up in logs: never the password.
    return re.sub(r"(?<=:)[^:@/]+(?=@)", "***", url)


def _hosts(netloc: str, url: str) -> tuple[tuple[str, int], ...]:
    found = []
    for part in netloc.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"REDIS_URL {url!r}: {part!r} is not host:port.")
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


def parse_url(url: str) -> Topology:
    """The topology ``url`` names; ``ConfigurationError`` saying what is wrong otherwise."""
    shown = _masked(url)
    scheme, _, rest = url.partition("://")
    if scheme in _PLAIN_SCHEMES:
        return Topology("single", url)
    if scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME) or not rest:
        raise ConfigurationError(
            f"REDIS_URL {shown!r} has no redis://, rediss://, unix://, "
            f"{SENTINEL_SCHEME}:// or {CLUSTER_SCHEME}:// scheme."
        )
    # urlsplit refuses a comma-separated netloc's ports, so the password comes off by hand.
    credentials, at, rest = rest.rpartition("@") if "@" in rest else ("", "", rest)
    password = unquote(credentials.partition(":")[2] or credentials) if at else None
    netloc, _, path = rest.partition("/")
    hosts = _hosts(netloc, shown)
    parts = [part for part in urlsplit("//x/" + path).path.split("/") if part]
    if scheme == CLUSTER_SCHEME:
        if parts not in ([], ["0"]):
            raise ConfigurationError(
                f"REDIS_URL {shown!r}: Redis Cluster has database 0 only; end the URL with '/'."
            )
        return Topology("cluster", url, hosts, password=password)
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ConfigurationError(
            f"REDIS_URL {shown!r}: write "
            f"{SENTINEL_SCHEME}://host:26379,host2:26379/<master name>/<db>."
        )
    db = int(parts[1]) if len(parts) == 2 else 0
    return Topology("sentinel", url, hosts, master=parts[0], db=db, password=password)


def _connect(topology: Topology) -> redis.Redis:
    options: dict[str, Any] = {"decode_responses": True, "health_check_interval": 30}
    if topology.kind == "sentinel":
        # Sentinels themselves seldom have a password; the data servers' goes to master_for.
        # Older redis-py releases leave Sentinel untyped (master_for builds a redis.Redis);
        # newer ones type it, so the ignore may be unused.
        sentinel = Sentinel(list(topology.hosts), socket_timeout=5)  # type: ignore[no-untyped-call,unused-ignore]
        master = sentinel.master_for(  # type: ignore[no-untyped-call,unused-ignore]
            topology.master, db=topology.db, password=topology.password, **options
        )
        return cast(redis.Redis, master)
    if topology.kind == "cluster":
        nodes = [
            ClusterNode(host, port)  # type: ignore[no-untyped-call]
            for host, port in topology.hosts
        ]
        cluster = RedisCluster(
            startup_nodes=nodes, password=topology.password, decode_responses=True
        )
        # RedisCluster answers the commands the store sends with Redis's signatures;
        # it is not a subclass, so the shared type is the single-server client's.
        return cast(redis.Redis, cluster)
    return redis.Redis.from_url(topology.url, **options)


def client() -> redis.Redis:
    """The process-wide Redis client for reactive state."""
    global _client
    if _client is None:
        url = reactive_settings.REDIS_URL
        if not url:
            raise ConfigurationError(
                "No Redis for reactive_celery: set REACTIVE_CELERY['REDIS_URL'] or REDIS_URL."
            )
        _client = _connect(parse_url(url))
    return _client


def reset_client() -> None:
    """Drop the cached client; the next call connects anew (settings changed)."""
    global _client
    _client = None


def now_ms() -> int:
    """Redis's clock in milliseconds: one clock for every host."""
    seconds, micros = client().time()
    return int(seconds) * 1000 + int(micros) // 1000


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting in ("REACTIVE_CELERY", "REDIS_URL"):
        reset_client()


setting_changed.connect(_reset)
