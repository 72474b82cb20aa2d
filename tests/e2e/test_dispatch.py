"""The probe dispatch across processes: a write in the test process, its dispatch and
evaluation in the real workers, the frame through a real ASGI server.

Counted through the store's statistics (what ``reactive_status`` shows): one
dispatch, one probe query and one evaluation for a write that concerns one of
many observers.
"""

import pytest
from django.contrib.auth.models import User

from tests.e2e.consistency import quiet
from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]

GROUPS = 30


def counters(live) -> dict[str, int]:
    names = ("dispatches", "probes", "skipped", "evaluations")
    return {name: int(live.redis.get(f"rc:stats:{name}") or 0) for name in names}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in before}


def test_one_write_among_many_observers_is_one_dispatch_one_probe_one_evaluation(live):
    items = [Item.objects.create(name=f"i{g}", position=g) for g in range(GROUPS)]
    # Ten subscriptions a socket: a subscriber may make 20 a second.
    socks = [live.socket() for _ in range(GROUPS // 10)]
    answers = [
        live.observe(f"/api/groups/?position={g}", socks[g % len(socks)]) for g in range(GROUPS)
    ]
    quiet(live.redis, [])
    before = counters(live)
    items[7].name = "renamed"
    items[7].save()
    frame = socks[7 % len(socks)].recv()
    assert (frame["observer"], frame["item"]["name"]) == (answers[7]["observer"], "renamed")
    quiet(live.redis, [])
    assert delta(before, counters(live)) == {
        "dispatches": 1,
        "probes": 1,
        "skipped": GROUPS - 1,
        "evaluations": 1,
    }
    Item.objects.create(name="joins", position=12)  # found by the probe alone
    frame = socks[12 % len(socks)].recv()
    assert (frame["observer"], frame["msg"]) == (answers[12]["observer"], "added")
    quiet(live.redis, [])
    assert delta(before, counters(live))["evaluations"] == 2


def test_per_user_observers_are_dispatched_as_their_users(live):
    users = [User.objects.create_user(f"user{n}") for n in range(3)]
    items = [Item.objects.create(name=f"i{n}", owner=user) for n, user in enumerate(users)]
    cookies = [live.login(user) for user in users]
    socks = [live.socket(c) for c in cookies]
    for sock, c in zip(socks, cookies, strict=True):
        live.observe("/api/own/", sock, c)
    quiet(live.redis, [])
    before = counters(live)
    items[2].owner = users[1]
    items[2].save()
    assert socks[1].recv()["msg"] == "added"
    assert socks[2].recv()["msg"] == "removed"
    quiet(live.redis, [])
    # user0's observer was probed (as user0) and left out; both others evaluated.
    assert delta(before, counters(live)) == {
        "dispatches": 1,
        "probes": 1,
        "skipped": 1,
        "evaluations": 2,
    }
