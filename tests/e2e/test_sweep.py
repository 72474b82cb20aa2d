"""The sweep, run by a real beat, after an ASGI server dies with its sockets open."""

import secrets
import time

import pytest

from tests import processes

pytestmark = [pytest.mark.e2e]

#: A dedicated ASGI server and beat: subscribers live 2 s unless renewed, sweep each second.
SHORT_LIVED = {
    "REACTIVE_TEST_SUBSCRIBER_TTL": "2",
    "REACTIVE_TEST_HEARTBEAT": "0.5",
    "REACTIVE_TEST_SWEEP_INTERVAL": "1",
}
#: Bounded statistics the workers keep; not state of any client.
STATS = {"rc:stats:evaluations", "rc:stats:timings", "rc:stats:errors"}


def test_state_of_a_killed_server_is_swept_back_to_the_baseline(live, spawn):
    baseline = set(live.redis.keys("*"))
    port = processes.free_port()
    server = spawn(processes.asgi_server, port, env=SHORT_LIVED)
    spawn(processes.celery_beat, "sweep", env=SHORT_LIVED)
    http = live.http(port=port)
    socks = [live.socket(port=port) for _ in range(3)]
    subscriptions = [
        ("/api/items/", socks[0]),
        ("/api/items/", socks[1]),
        (f"/api/ticks/?name={secrets.token_hex(6)}", socks[2]),
        ("/api/items/?enabled=True", socks[2]),
    ]
    observers = set()
    for path, sock in subscriptions:
        separator = "&" if "?" in path else "?"
        response = http.get(f"{path}{separator}observe={sock.id}")
        assert response.status_code == 200, response.text
        observers.add(response.json()["observer"])
    assert len(observers) == 3

    # Longer than the subscriber lifetime: heartbeats renew it and each sweep leaves it.
    time.sleep(3)
    for sock in socks:
        assert live.redis.exists(f"rc:sub:{sock.id}")
    assert sum(live.redis.scard(f"rc:obs:{oid}:subs") for oid in observers) == 4
    assert live.redis.zcard("rc:poll") == 1
    assert live.redis.keys("rc:dep:*")

    server.kill()  # SIGKILL: no socket closes cleanly, no disconnect handler runs

    def leftovers():
        return set(live.redis.keys("*")) - baseline - STATS

    # The lifetime (2 s) plus a sweep or two; then nothing of the clients remains.
    started = time.monotonic()
    live.wait_for(lambda: not leftovers(), timeout=12)
    assert time.monotonic() - started >= 1  # gone by expiry and sweep, not at once
    assert live.redis.zcard("rc:poll") == 0
    for name in set(live.redis.keys("*")) - baseline:
        assert name in STATS and live.redis.ttl(name) > 0
