"""The Sentinel group helper: a master, its replica, three sentinels; a failover on demand."""

import redis
from redis.sentinel import Sentinel

from reactive_celery.testing import sentinel


def test_the_sentinels_name_the_master_and_its_url_reaches_it(sentinel_group):
    assert sentinel_group.master_address() == ("127.0.0.1", sentinel_group.master_port)
    hosts = ",".join(f"127.0.0.1:{port}" for port in sentinel_group.sentinel_ports)
    assert sentinel_group.url(3) == f"redis+sentinel://{hosts}/{sentinel.MASTER_NAME}/3"
    found = Sentinel(sentinel_group.addresses, socket_timeout=5)
    with found.master_for(sentinel.MASTER_NAME, db=3) as master:
        master.set("probe", "1")
        assert master.execute_command("WAIT", 1, 5000) == 1  # the replica acknowledged it
    with redis.Redis(port=sentinel_group.replica_port, db=3) as replica:
        assert replica.get("probe") == b"1"
        assert replica.info("replication")["role"] == "slave"
    for one in found.sentinels:
        one.close()


def test_killing_the_master_promotes_the_replica(sentinel_group):
    sentinel_group.kill_master()
    assert sentinel_group.master.poll() is not None
    assert sentinel_group.wait_for_failover() == ("127.0.0.1", sentinel_group.replica_port)


def test_stop_ends_every_process_of_the_group():
    group = sentinel.start(sentinels=1)
    group.stop()
    assert all(p.poll() is not None for p in [group.master, group.replica, *group.sentinels])
