"""The batched protocol's consumer (``ws/reactive/``), in-process over the real layer.

Subscribes run the project's @reactive views in threads against the SQLite
file database, so those tests commit (``transaction=True``).
"""

import json

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import override_settings

from reactive_celery import broadcast, conf, fanout, observer, protocol
from reactive_celery.exceptions import ConfigurationError
from reactive_celery.store import locks, observers, subscribers
from tests.testapp.models import Item

from . import TIMEOUT

PATH = "/ws/reactive/"
#: A well-formed observer id nothing holds.
UNKNOWN = "0" * 64


async def ask(socket, message: dict) -> dict:
    """Send one request; return the next frame, which must be its answer."""
    await socket.send_json_to(message)
    return await socket.receive_json_from(timeout=TIMEOUT)


def reactive_settings(**changes):
    """``override_settings`` of some REACTIVE_CELERY keys, the test settings kept."""
    return override_settings(REACTIVE_CELERY={**settings.REACTIVE_CELERY, **changes})


def only_subscriber(store_redis) -> str:
    """The subscriber id of the one open socket."""
    (key,) = [key for key in store_redis.keys("rc:sub:*") if not key.endswith(":obs")]
    return key.removeprefix("rc:sub:")


def group_members(layer_redis, oid: str) -> list[str]:
    return layer_redis.zrange(f"asgi:group:{broadcast.group_name(oid)}", 0, -1)


@pytest.fixture
def items(transactional_db):
    """Two committed items, written before any observer exists (nothing is queued)."""
    return [Item.objects.create(name="first", position=1), Item.objects.create(name="second")]


@pytest.mark.django_db(transaction=True)
def test_subscribe_answers_the_items_and_version(run, sockets, items, store_redis, layer_redis):
    async def body():
        async with sockets.open(PATH) as socket:
            answer = await ask(socket, {"type": "subscribe", "id": 1, "url": "/api/items/"})
            assert answer["type"] == "subscribed"
            assert answer["id"] == 1
            assert protocol.OBSERVER_ID.fullmatch(answer["observer"])
            assert answer["primary_key"] == "id"
            assert [item["name"] for item in answer["items"]] == ["first", "second"]
            assert "diffs" not in answer and "reset" not in answer
            oid = answer["observer"]
            assert observers.load(oid).version == answer["version"]
            sid = only_subscriber(store_redis)
            assert subscribers.follows(sid, oid)
            channel = store_redis.hget(f"rc:sub:{sid}", "channel")
            # The group holds the socket's process (its hub), which forwards to the socket.
            assert group_members(layer_redis, oid) == [fanout.hub_channel(channel)]

    run(body)


@pytest.mark.django_db(transaction=True)
def test_subscribe_to_a_paginated_view_carries_its_meta(run, sockets, items):
    async def body():
        async with sockets.open(PATH) as socket:
            answer = await ask(socket, {"type": "subscribe", "id": "p", "url": "/api/paged/"})
            assert answer["type"] == "subscribed"
            assert (answer["count"], answer["next"], answer["previous"]) == (2, None, None)
            assert len(answer["items"]) == 2

    run(body)


@pytest.mark.django_db(transaction=True)
def test_subscribe_runs_the_view_as_the_sessions_user(
    run, sockets, items, user, user_cookie, django_user_model
):
    other = django_user_model.objects.create_user(username="bob")
    Item.objects.create(name="alice's", owner=user)
    Item.objects.create(name="bob's", owner=other)

    async def body():
        async with sockets.open(PATH, cookie=user_cookie) as alice, sockets.open(PATH) as anon:
            answer = await ask(alice, {"type": "subscribe", "id": 1, "url": "/api/own/"})
            assert [item["name"] for item in answer["items"]] == ["alice's"]
            refused = await ask(anon, {"type": "subscribe", "id": 2, "url": "/api/own/"})
            assert (refused["type"], refused["id"], refused["code"]) == ("error", 2, "forbidden")

    run(body)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_message"),
        ('"subscribe"', "bad_message"),
        ("{}", "bad_message"),
        ('{"type": 7}', "bad_message"),
        ('{"type": "ping", "id": true}', "bad_message"),
        ('{"type": "ping", "id": [1]}', "bad_message"),
        (json.dumps({"type": "ping", "id": "x" * 65}), "bad_message"),
        ('{"type": "publish"}', "unknown_type"),
        (json.dumps({"type": "ping", "pad": "x" * 65536}), "too_large"),
    ],
)
def test_malformed_frames_are_refused_with_a_code(run, sockets, frame, code):
    async def body():
        async with sockets.open(PATH) as socket:
            await socket.send_to(text_data=frame)
            answer = await socket.receive_json_from(timeout=TIMEOUT)
            assert (answer["type"], answer["code"]) == ("error", code)
            assert "id" not in answer  # none was valid to repeat
            # The socket stays usable.
            assert await ask(socket, {"type": "ping", "id": 2}) == {"type": "pong", "id": 2}

    run(body)


def test_binary_frames_are_refused(run, sockets):
    async def body():
        async with sockets.open(PATH) as socket:
            await socket.send_to(bytes_data=b'{"type": "ping"}')
            answer = await socket.receive_json_from(timeout=TIMEOUT)
            assert (answer["type"], answer["code"]) == ("error", "bad_message")

    run(body)


def test_an_unknown_type_repeats_the_request_id(run, sockets):
    async def body():
        async with sockets.open(PATH) as socket:
            answer = await ask(socket, {"type": "publish", "id": "req-1"})
            assert (answer["code"], answer["id"]) == ("unknown_type", "req-1")

    run(body)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"url": "http://evil.example/api/items/"}, "bad_url"),
        ({"url": "//evil.example/api/items/"}, "bad_url"),
        ({"url": "api/items/"}, "bad_url"),
        ({"url": ""}, "bad_message"),
        ({"url": 7}, "bad_message"),
        ({}, "bad_message"),
        ({"url": "/api/items/?q=" + "x" * protocol.MAX_URL}, "bad_message"),
        ({"url": "/api/plain/"}, "not_reactive"),
        ({"url": "/api/nothing/"}, "not_found"),
        ({"url": "/api/items/999999/"}, "not_found"),
        ({"url": "/api/items/", "observer": UNKNOWN}, "bad_message"),
        ({"url": "/api/items/", "version": 3}, "bad_message"),
        ({"url": "/api/items/", "observer": "abc", "version": 3}, "bad_message"),
        ({"url": "/api/items/", "observer": UNKNOWN, "version": -1}, "bad_message"),
        ({"url": "/api/items/", "observer": UNKNOWN, "version": True}, "bad_message"),
    ],
)
def test_refused_subscribes_answer_a_code_and_change_nothing(
    run, sockets, items, store_redis, request_, code
):
    async def body():
        async with sockets.open(PATH) as socket:
            answer = await ask(socket, {"type": "subscribe", "id": 9, **request_})
            assert (answer["type"], answer["id"], answer["code"]) == ("error", 9, code)
            assert subscribers.count(only_subscriber(store_redis)) == 0
            assert store_redis.keys("rc:obs:*") == []

    run(body)


@pytest.mark.django_db(transaction=True)
def test_subscribes_over_the_rate_are_refused(run, sockets, items):
    async def body():
        async with sockets.open(PATH) as socket:
            first = await ask(socket, {"type": "subscribe", "id": 1, "url": "/api/items/"})
            second = await ask(socket, {"type": "subscribe", "id": 2, "url": "/api/paged/"})
            pong = await ask(socket, {"type": "ping", "id": 3})
            assert [first["type"], second.get("code"), pong["type"]] == [
                "subscribed",
                "rate_limited",
                "pong",
            ]

    with reactive_settings(SUBSCRIBE_RATE=1):
        run(body)


def test_frames_over_the_rate_are_refused_before_any_work(run, sockets):
    async def body():
        async with sockets.open(PATH) as socket:
            answers = [await ask(socket, {"type": "ping", "id": i}) for i in range(3)]
            assert [a.get("code", a["type"]) for a in answers] == ["pong", "pong", "rate_limited"]
            assert answers[2]["id"] == 2  # the refusal still answers its request

    with reactive_settings(FRAME_RATE=2):
        run(body)


def test_a_subscribe_to_a_current_observer_makes_two_round_trips_to_the_store(
    run, sockets, items, round_trips
):
    async def body():
        # Two sockets of one signed-out visitor: its address owns the observer.
        async with (
            sockets.open(PATH, address="10.0.0.7") as first,
            sockets.open(PATH, address="10.0.0.7") as second,
        ):
            held = await ask(first, {"type": "subscribe", "id": 1, "url": "/api/items/"})
            await sync_to_async(locks.precise_table)(held["observer"])  # read once a process
            before = round_trips()
            answer = await ask(second, {"type": "subscribe", "id": 1, "url": "/api/items/"})
            assert (answer["type"], answer["version"]) == ("subscribed", held["version"])
            # Admission with the subscription itself, then the stored result for the
            # answer; the subscription cap is the admission's, not a read of its own.
            assert round_trips() - before == 2

    run(body)


@pytest.mark.django_db(transaction=True)
def test_a_socket_over_its_subscription_limit_is_refused_but_may_resume(
    run, sockets, items, store_redis
):
    async def body():
        async with sockets.open(PATH) as socket:
            held = await ask(socket, {"type": "subscribe", "id": 1, "url": "/api/items/"})
            over = await ask(socket, {"type": "subscribe", "id": 2, "url": "/api/paged/"})
            assert (over["type"], over["code"]) == ("error", "too_many_subscriptions")
            sid = only_subscriber(store_redis)
            assert subscribers.count(sid) == 1
            resume = {"observer": held["observer"], "version": held["version"]}
            again = await ask(
                socket, {"type": "subscribe", "id": 3, "url": "/api/items/", **resume}
            )
            assert (again["type"], again["diffs"]) == ("subscribed", [])
            assert subscribers.count(sid) == 1
            # The same query without a resume: the observer it holds, so not over the cap.
            same = await ask(socket, {"type": "subscribe", "id": 4, "url": "/api/items/"})
            assert (same["type"], same["observer"]) == ("subscribed", held["observer"])
            assert subscribers.count(sid) == 1

    with reactive_settings(MAX_SUBSCRIPTIONS=1):
        run(body)


@pytest.mark.django_db(transaction=True)
def test_unsubscribe_ends_the_subscription_once(run, sockets, items, store_redis, layer_redis):
    async def body():
        async with sockets.open(PATH) as socket:
            oid = (await ask(socket, {"type": "subscribe", "id": 1, "url": "/api/items/"}))[
                "observer"
            ]
            request = {"type": "unsubscribe", "id": 2, "observer": oid}
            assert await ask(socket, request) == {"type": "unsubscribed", "id": 2, "observer": oid}
            assert subscribers.count(only_subscriber(store_redis)) == 0
            assert observers.load(oid) is None  # it was the last subscriber
            assert group_members(layer_redis, oid) == []
            again = await ask(socket, request)
            assert (again["type"], again["id"], again["code"]) == ("error", 2, "not_subscribed")
            bad = await ask(socket, {"type": "unsubscribe", "id": 3, "observer": "nope"})
            assert bad["code"] == "bad_message"

    run(body)


def test_ping_is_answered_with_pong(run, sockets):
    async def body():
        async with sockets.open(PATH) as socket:
            assert await ask(socket, {"type": "ping", "id": "abc"}) == {"type": "pong", "id": "abc"}
            assert await ask(socket, {"type": "ping"}) == {"type": "pong"}

    run(body)


@pytest.mark.django_db(transaction=True)
def test_resume_gets_the_missed_diffs_while_the_buffer_reaches(run, sockets, items):
    async def body():
        async with sockets.open(PATH) as holder, sockets.open(PATH) as resumer:
            first = await ask(holder, {"type": "subscribe", "id": 1, "url": "/api/items/"})
            oid, version = first["observer"], first["version"]
            # bulk_create sends no signals; marked owed as a commit would, with no worker
            # here to run it: the resume evaluates (a current observer would be read as is).
            (late,) = await sync_to_async(Item.objects.bulk_create)([Item(name="late")])
            await sync_to_async(locks.queue)([oid])
            late_item = {
                "id": late.pk,
                "name": "late",
                "enabled": True,
                "position": 0,
                "owner": None,
            }
            resume = {"url": "/api/items/", "observer": oid, "version": version}
            answer = await ask(resumer, {"type": "subscribe", "id": 2, **resume})
            expected = {
                "type": "diff",
                "observer": oid,
                "version": version + 1,
                "removed": [],
                "added": [{"order": 2, "item": late_item}],
                "changed": [],
                "moved": [],
            }
            assert answer["type"] == "subscribed"
            assert (answer["observer"], answer["version"]) == (oid, version + 1)
            assert answer["diffs"] == [expected]
            assert "items" not in answer
            # The socket already following got the same change pushed.
            assert await holder.receive_json_from(timeout=TIMEOUT) == expected

    run(body)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("known", [True, False])
def test_resume_past_the_buffer_or_of_another_observer_resets(run, sockets, items, known):
    async def body():
        async with sockets.open(PATH) as holder, sockets.open(PATH) as resumer:
            first = await ask(holder, {"type": "subscribe", "id": 1, "url": "/api/items/"})
            oid = first["observer"] if known else UNKNOWN
            # Known: a version before the observer's first holds no diffs to replay.
            resume = {"url": "/api/items/", "observer": oid, "version": first["version"] - 1}
            answer = await ask(resumer, {"type": "subscribe", "id": 2, **resume})
            assert answer["type"] == "subscribed"
            assert answer["reset"] is True
            assert answer["observer"] == first["observer"]
            assert [item["name"] for item in answer["items"]] == ["first", "second"]
            assert "diffs" not in answer

    run(body)


@pytest.mark.django_db(transaction=True)
def test_a_group_diff_arrives_as_one_diff_frame(run, sockets, items, layer):
    first, second = items

    async def body():
        async with sockets.open(PATH) as socket:
            answer = await ask(socket, {"type": "subscribe", "id": 1, "url": "/api/items/"})
            oid, version = answer["observer"], answer["version"] + 1
            changes = [
                {"msg": "removed", "order": 0, "item": {"id": first.pk}},
                {"msg": "added", "order": 0, "item": {"id": 50, "name": "new"}},
                {"msg": "changed", "order": 1, "item": {"id": second.pk}, "moved": True},
            ]
            message = protocol.diff_message(oid, version, "id", changes)
            await layer.group_send(broadcast.group_name(oid), message)
            assert await socket.receive_json_from(timeout=TIMEOUT) == {
                "type": "diff",
                "observer": oid,
                "version": version,
                "removed": [first.pk],
                "added": [{"order": 0, "item": {"id": 50, "name": "new"}}],
                "changed": [],
                "moved": [{"order": 1, "pk": second.pk}],
            }
            assert await socket.receive_nothing(timeout=0.2)

    run(body)


@pytest.mark.django_db(transaction=True)
def test_a_stopped_observer_ends_the_subscription(
    run, sockets, items, layer, store_redis, layer_redis, eventually
):
    async def body():
        async with sockets.open(PATH) as socket:
            answer = await ask(socket, {"type": "subscribe", "id": 1, "url": "/api/items/"})
            oid = answer["observer"]
            await sync_to_async(observer.stop)(oid, "forbidden", "Not any more.")
            assert await socket.receive_json_from(timeout=TIMEOUT) == {
                "type": "error",
                "observer": oid,
                "code": "forbidden",
                "message": "Not any more.",
            }
            assert subscribers.count(only_subscriber(store_redis)) == 0
            await eventually(lambda: group_members(layer_redis, oid) == [], "left the group")
            change = {"msg": "added", "order": 0, "item": {"id": 9}}
            await layer.group_send(
                broadcast.group_name(oid), protocol.diff_message(oid, 2, "id", [change])
            )
            assert await socket.receive_nothing(timeout=0.2)

    run(body)


@pytest.mark.django_db(transaction=True)
def test_closing_the_socket_drops_its_subscriptions(run, sockets, items, store_redis, layer_redis):
    oids = []

    async def body():
        async with sockets.open(PATH) as socket:
            for request_id, url in enumerate(["/api/items/", "/api/paged/"]):
                answer = await ask(socket, {"type": "subscribe", "id": request_id, "url": url})
                oids.append(answer["observer"])

    run(body)
    assert len(set(oids)) == 2
    assert store_redis.keys("rc:sub:*") == []
    assert store_redis.keys("rc:obs:*") == []
    assert [group_members(layer_redis, oid) for oid in oids] == [[], []]


@pytest.mark.django_db(transaction=True)
def test_a_refused_resume_at_the_limit_keeps_the_other_subscriptions(run, sockets, store_redis):
    # "An error with an id answers one request and changes nothing."
    Item.objects.create(name="one")

    async def body():
        async with sockets.open(PATH) as socket:
            a = await ask(socket, {"type": "subscribe", "id": 1, "url": "/api/items/"})
            b = await ask(socket, {"type": "subscribe", "id": 2, "url": "/api/paged/"})
            sid = next(k for k in store_redis.keys("rc:sub:*") if not k.endswith(":obs"))[7:]
            # Resume A with a URL that now names B, which the socket also holds.
            resume = {"observer": a["observer"], "version": a["version"], "url": "/api/paged/"}
            answer = await ask(socket, {"type": "subscribe", "id": 3, **resume})
            # The URL names B, which the socket holds already: nothing grows, nothing goes.
            assert answer["type"] == "subscribed" and answer["observer"] == b["observer"]
            assert subscribers.follows(sid, b["observer"])

    with reactive_settings(MAX_SUBSCRIPTIONS=2):
        run(body)


def test_a_rate_below_one_is_a_settings_error_not_a_socket_that_refuses_everything():
    with (
        reactive_settings(SUBSCRIBE_RATE=0.5),
        pytest.raises(ConfigurationError, match="at least 1"),
    ):
        _ = conf.reactive_settings.SUBSCRIBE_RATE


@pytest.mark.parametrize("frame", ['{"id": 1}', '{"id": 1, "type": 7}'])
def test_a_refusal_of_a_frame_with_a_valid_id_repeats_the_id(run, sockets, frame):
    # "Client requests may carry an id ... that the answer repeats."
    async def body():
        async with sockets.open(PATH) as socket:
            await socket.send_to(text_data=frame)
            answer = await socket.receive_json_from(timeout=TIMEOUT)
            assert (answer["code"], answer.get("id")) == ("bad_message", 1)

    run(body)
