"""Polling observers driven by a real ``celery beat``: rate, lifecycle, restarts."""

import secrets
import time

import pytest

from tests import processes
from tests.testapp.ops_views import ticks

pytestmark = [pytest.mark.e2e]

#: The TickViewSet's poll_interval.
INTERVAL = 1.0


def counter(name: str) -> int:
    return int(ticks().get(f"tick:{name}") or 0)


def assert_not_polled(name: str, sock=None) -> None:
    """Nothing evaluates the view any more: its counter stands still, no frame arrives."""
    time.sleep(0.5)  # an evaluation already running when the subscriber left may finish
    if sock is not None:
        drain(sock)
    before = counter(name)
    time.sleep(3 * INTERVAL)
    assert counter(name) == before
    if sock is not None:
        with pytest.raises(TimeoutError):
            sock.recv(timeout=0.1)


def drain(sock) -> list[dict]:
    frames = []
    while True:
        try:
            frames.append(sock.recv(timeout=0.05))
        except TimeoutError:
            return frames


def pushes_during(sock, seconds: float) -> list[dict]:
    deadline = time.monotonic() + seconds
    frames = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames.append(sock.recv(timeout=left))
        except TimeoutError:
            break
    return frames


def settle(sock, beat) -> list[dict]:
    """Wait until ``beat`` polls; return the pushes its start-up delayed (they come bunched)."""
    beat.wait_for_output("Sending due task reactive_celery.poll")
    time.sleep(1.5 * INTERVAL)
    return drain(sock)


def test_polled_each_interval_until_unsubscribe_or_close(live, spawn):
    spawn(processes.celery_beat, "polling")
    name = secrets.token_hex(6)
    sock = live.socket()
    answer = live.observe(f"/api/ticks/?name={name}", sock)
    oid = answer["observer"]
    assert answer["items"] == [{"name": name, "value": 1}]
    start = answer["version"]
    assert live.redis.zscore("rc:poll", oid) is not None

    frames, arrivals = [], []
    for _ in range(3):
        frames.append(sock.recv(timeout=10))
        arrivals.append(time.monotonic())
    assert [(f["msg"], f["item"]["value"], f["version"]) for f in frames] == [
        ("changed", 2, start + 1),
        ("changed", 3, start + 2),
        ("changed", 4, start + 3),
    ]
    # Two intervals lie between the first and the third push, not a busy loop.
    assert arrivals[2] - arrivals[0] >= 1.5 * INTERVAL

    response = live.http().post(
        "/api/queryobserver/unsubscribe", params={"observer": oid, "subscriber": sock.id}
    )
    assert response.status_code == 204
    assert live.redis.zscore("rc:poll", oid) is None
    assert_not_polled(name, sock)

    other_name = secrets.token_hex(6)
    closing = live.socket()
    other = live.observe(f"/api/ticks/?name={other_name}", closing)["observer"]
    assert closing.recv(timeout=10)["item"]["value"] == 2
    closing.close()
    live.wait_for(lambda: live.redis.zscore("rc:poll", other) is None, timeout=10)
    assert_not_polled(other_name)


def test_a_second_and_a_restarted_beat_do_not_double_the_rate(live, spawn):
    first = spawn(processes.celery_beat, "first")
    name = secrets.token_hex(6)
    sock = live.socket()
    live.observe(f"/api/ticks/?name={name}", sock)
    sock.recv(timeout=10)  # polling runs

    alone = pushes_during(sock, 5)
    second = spawn(processes.celery_beat, "second")
    skipped = settle(sock, second)
    together = pushes_during(sock, 5)
    first.kill()  # SIGKILL mid-run, as a crashed host
    second.kill()
    restarted = spawn(processes.celery_beat, "first-again", schedule=first.schedule)
    skipped += settle(sock, restarted)
    after_restart = pushes_during(sock, 5)

    counts = [len(alone), len(together), len(after_restart)]
    # Five intervals per window: one push each; two beats polling would give about ten.
    assert all(3 <= count <= 7 for count in counts), counts
    versions = sorted(f["version"] for f in alone + together + after_restart + skipped)
    assert versions == list(range(versions[0], versions[0] + len(versions)))
