"""A Sentinel-watched Redis on loopback: one master, one replica, three sentinels.

    group = sentinel.start()        # answers once every sentinel knows the replica
    group.url(0)                    # redis+sentinel://127.0.0.1:p1,...:p3/reactive/0
    group.kill_master()             # SIGKILL; the sentinels promote the replica
    group.stop()

Sentinels run as ``redis-server --sentinel`` (the binary of ``redis_server``),
each with a config file in a temporary directory, since a sentinel rewrites it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import redis

from ..exceptions import ConfigurationError
from . import redis_server

__all__ = ["MASTER_NAME", "SentinelGroup", "start"]

MASTER_NAME = "reactive"


@dataclass
class SentinelGroup:
    """The servers and sentinels of one group, started by ``start()``."""

    master: subprocess.Popen[bytes]
    master_port: int
    replica: subprocess.Popen[bytes]
    replica_port: int
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The sentinels as (host, port) pairs, as redis-py and channels_redis take them."""
        return [("127.0.0.1", port) for port in self.sentinel_ports]

    def url(self, db: int) -> str:
        """The ``redis+sentinel://`` URL of database ``db`` of the group's master."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.addresses)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/{db}"

    def master_address(self) -> tuple[str, int]:
        """Where the first sentinel that answers says the master is now."""
        for host, port in self.addresses:
            try:
                with redis.Redis(host=host, port=port, socket_timeout=1) as one:
                    answer = one.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            except redis.RedisError:
                continue
            if answer:
                return answer[0].decode(), int(answer[1])
        raise ConfigurationError("No sentinel of the group answers.")

    def _all_agree(self) -> bool:
        for host, port in self.addresses:
            try:
                with redis.Redis(host=host, port=port, socket_timeout=1) as one:
                    state = one.sentinel_master(MASTER_NAME)
            except redis.RedisError:
                return False
            if (
                int(state["port"]) != self.replica_port
                or not state["is_master"]
                or state["is_sdown"]
                or state["is_odown"]
            ):
                return False
        return True

    def kill_master(self) -> None:
        """SIGKILL the first master, as a crashed machine would stop it."""
        os.killpg(self.master.pid, signal.SIGKILL)
        self.master.wait(10)

    def wait_for_failover(self, timeout: float = 60) -> tuple[str, int]:
        """Wait until the sentinels name the replica as master and it accepts writes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.master_address() == ("127.0.0.1", self.replica_port):
                with redis.Redis(port=self.replica_port) as replica:
                    role = replica.execute_command("ROLE")
                # A client asks any sentinel: each must name the new master, up.
                if role[0] == b"master" and self._all_agree():
                    return "127.0.0.1", self.replica_port
            time.sleep(0.1)
        raise ConfigurationError(f"No failover to the replica within {timeout} s.")

    def stop(self) -> None:
        """Stop every process of the group that still runs."""
        for process in [*self.sentinels, self.replica, self.master]:
            if process.poll() is None:
                redis_server.stop_process(process)


def _sentinel(master_port: int, quorum: int) -> tuple[subprocess.Popen[bytes], int]:
    port = redis_server.free_port()
    workdir = tempfile.mkdtemp(prefix="reactive-sentinel-")
    config = os.path.join(workdir, "sentinel.conf")
    with open(config, "w") as out:
        out.write(
            f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {quorum}\n"
            # A second without answers and the master is down: the fault test waits seconds,
            # not the default 30.
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
        )
    process = subprocess.Popen(
        [redis_server.find_binary(), config, "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    redis_server.wait_until_answers(process, port)
    return process, port


def start(sentinels: int = 3) -> SentinelGroup:
    """Start a master, its replica and ``sentinels`` sentinels (quorum: a majority)."""
    master, master_url = redis_server.start()
    master_port = int(master_url.rsplit(":", 1)[1])
    replica, replica_url = redis_server.start(None, "--replicaof", "127.0.0.1", str(master_port))
    group = SentinelGroup(master, master_port, replica, int(replica_url.rsplit(":", 1)[1]))
    try:
        _wait_for_sync(group.replica_port)
        for _ in range(sentinels):
            process, port = _sentinel(master_port, sentinels // 2 + 1)
            group.sentinels.append(process)
            group.sentinel_ports.append(port)
        _wait_for_discovery(group)
    except BaseException:
        group.stop()
        raise
    return group


def _wait_for_sync(replica_port: int) -> None:
    deadline = time.monotonic() + 10
    with redis.Redis(port=replica_port, decode_responses=True) as replica:
        while time.monotonic() < deadline:
            if replica.info("replication").get("master_link_status") == "up":
                return
            time.sleep(0.05)
    raise ConfigurationError("The replica did not sync with its master within 10 seconds.")


def _wait_for_discovery(group: SentinelGroup) -> None:
    # A failover needs every sentinel to know the replica and a quorum of its peers.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = 0
        for port in group.sentinel_ports:
            with redis.Redis(port=port, decode_responses=True) as one:
                state = one.execute_command("SENTINEL", "MASTER", MASTER_NAME)
            if isinstance(state, list):  # RESP2 answers a flat list of names and values
                state = dict(zip(state[::2], state[1::2], strict=True))
            peers = len(group.sentinel_ports) - 1
            if int(state["num-slaves"]) >= 1 and int(state["num-other-sentinels"]) >= peers:
                ready += 1
        if ready == len(group.sentinel_ports):
            return
        time.sleep(0.1)
    raise ConfigurationError("The sentinels did not discover the replica and each other in 30 s.")
