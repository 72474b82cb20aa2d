"""Fuzzing the batched socket: every bad frame gets an error, nothing changes, the socket lives."""

import json
import random

import pytest

pytestmark = [pytest.mark.e2e]

SEED = 20261127
CASES = 1200


def bad_frames(rng: random.Random):
    """Malformed JSON, wrong shapes and types, unknown types, bad ids, forged observers."""
    scalars = [None, True, 0, -1, 1.5, "", "x" * 70, [], {}, [1, 2], {"a": 1}]
    makers = [
        lambda: "".join(rng.choice('{}[]":,abc\\ 0') for _ in range(rng.randint(0, 40))) + "{",
        lambda: json.dumps(rng.choice(scalars[:-1])),
        lambda: json.dumps({"type": rng.choice(scalars)}),
        lambda: json.dumps({"type": "".join(rng.choice("abcxyz_.") for _ in range(8))}),
        lambda: json.dumps({"type": "subscribe", "url": rng.choice(scalars)}),
        lambda: json.dumps({"type": "subscribe", "url": "/api/items/", "version": 3}),
        lambda: json.dumps(
            {
                "type": "subscribe",
                "url": "/api/items/",
                "observer": rng.choice(scalars),
                "version": 1,
            }
        ),
        lambda: json.dumps(
            {
                "type": "subscribe",
                "url": "/api/items/",
                "observer": "a" * 64,
                "version": rng.choice([-1, "1", True, 1.5]),
            }
        ),
        lambda: json.dumps(
            {
                "type": "subscribe",
                "url": rng.choice(
                    [
                        "/api/plain/",
                        "/nowhere/",
                        "https://x.example/api/items/",
                        "api/items/",
                        "//x/y",
                    ]
                ),
            }
        ),
        lambda: json.dumps({"type": "unsubscribe", "observer": rng.choice(scalars + ["f" * 64])}),
        lambda: json.dumps({"type": "ping", "id": rng.choice([1.5, [], {}, "x" * 65, True])}),
        lambda: json.dumps({"type": "subscribe", "url": "/" + "a" * rng.randint(2049, 3000)}),
    ]
    for _ in range(CASES):
        yield rng.choice(makers)()


def _state(store) -> list[str]:
    # The subscribe-rate window (rc:rate:<sid>) lives a second: on a slow machine it
    # expires during the loop, and it is not state a bad frame could change.
    return sorted(key for key in store.keys("rc:*") if not key.startswith("rc:rate:"))


def test_fuzzed_frames_each_get_an_error_and_change_nothing(live):
    sock = live.batched()
    keeper = sock.subscribe("/api/items/")
    before = _state(live.redis)
    rng = random.Random(SEED)
    codes = set()
    for text in bad_frames(rng):
        sock.send_raw(text)
        frame = sock.recv()
        assert frame["type"] == "error", (text, frame)
        assert frame["message"]
        codes.add(frame["code"])
    assert codes >= {"bad_json", "bad_message", "unknown_type", "not_reactive", "bad_url"}
    assert _state(live.redis) == before
    assert live.redis.smembers(f"rc:obs:{keeper['observer']}:subs")
    assert sock.request({"type": "ping"})["type"] == "pong"


def test_huge_frame_is_refused(live):
    sock = live.batched()
    sock.send_raw(json.dumps({"type": "ping", "pad": "x" * 100_000}))
    frame = sock.recv()
    assert (frame["type"], frame["code"]) == ("error", "too_large")
    assert sock.request({"type": "ping"})["type"] == "pong"


def test_binary_frame_is_refused(live):
    sock = live.batched()
    sock.connection.send(b"\x00\x01")
    assert sock.recv()["code"] == "bad_message"


def test_subscribe_flood_is_rate_limited(live):
    sock = live.batched()
    answers = [
        sock.request({"type": "subscribe", "url": f"/api/items/?name={i}"}) for i in range(60)
    ]
    codes = [a.get("code") for a in answers]
    assert codes.count("rate_limited") > 0
    assert all(a["type"] == "subscribed" for a in answers if a.get("code") is None)
    held = len(live.redis.keys("rc:obs:*:subs"))
    assert held == codes.count(None) <= 60


def test_subscriptions_per_socket_are_capped(live):
    import time

    sock = live.batched()
    subscribed = 0
    refused = None
    for i in range(1000):
        answer = sock.request({"type": "subscribe", "url": f"/api/items/?limit_probe={i}"})
        if answer.get("code") == "rate_limited":
            time.sleep(0.06)
            continue
        if answer.get("code") == "too_many_subscriptions":
            refused = answer
            break
        assert answer["type"] == "subscribed"
        subscribed += 1
    assert refused is not None
    assert subscribed == 100
