"""A three-master Redis Cluster on loopback, for tests of the store in cluster mode.

    nodes = cluster.start()        # answers once every slot is served
    nodes.url                      # redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/
    nodes.stop()

Three ``redis-server --cluster-enabled yes`` joined by ``redis-cli --cluster
create --cluster-yes`` (redis-cli ships beside redis-server: Debian's
redis-tools, which redis-server depends on).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import redis

from ..exceptions import ConfigurationError
from . import redis_server

__all__ = ["Cluster", "start"]


@dataclass
class Cluster:
    """The master processes of one cluster and their ports."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL naming every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports) + "/"

    def stop(self) -> None:
        """Stop every node that still runs."""
        for process in self.processes:
            if process.poll() is None:
                redis_server.stop_process(process)


def _cli() -> str:
    found = shutil.which("redis-cli") or shutil.which("valkey-cli")
    if found is None:
        raise ConfigurationError(
            "No redis-cli found: install it (apt-get install redis-tools, brew install redis)."
        )
    return found


def _node_port() -> int:
    # A node also listens on port + 10000 (the cluster bus): both must be free, and valid.
    while True:
        port = redis_server.free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def start(masters: int = 3) -> Cluster:
    """Start ``masters`` cluster nodes, join them, and wait until all 16384 slots are served."""
    cli = _cli()
    nodes = Cluster()
    try:
        for _ in range(masters):
            workdir = tempfile.mkdtemp(prefix="reactive-cluster-")
            process, url = redis_server.start(
                _node_port(),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"{workdir}/nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--databases",
                "1",
            )
            nodes.processes.append(process)
            nodes.ports.append(int(url.rsplit(":", 1)[1]))
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in nodes.ports), "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _wait_until_served(nodes)
    except BaseException:
        nodes.stop()
        raise
    return nodes


def _wait_until_served(nodes: Cluster) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = []
        for port in nodes.ports:
            with redis.Redis(port=port, decode_responses=True) as node:
                states.append(node.cluster("INFO").get("cluster_state"))
        if states == ["ok"] * len(nodes.ports):
            return
        time.sleep(0.1)
    raise ConfigurationError("The cluster did not serve every slot within 30 seconds.")
