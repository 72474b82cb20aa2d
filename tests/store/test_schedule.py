"""The polling schedule against the real Redis: due times, claims, lifetimes."""

import threading

from reactive_celery.store import keys, observers, schedule, subscribers


def polling_observer(oid: str, interval: float = 1, subscriber: str = "sub12345") -> None:
    observers.save(oid, spec="{}", items=[], meta={}, version=1, tables=[], creator="")
    subscribers.register(subscriber, f"chan-{subscriber}", "")
    subscribers.subscribe(oid, subscriber)
    schedule.schedule(oid, interval)


def make_due(r, oid: str) -> None:
    r.zadd(keys.poll(), {oid: 0})


def test_a_new_observer_is_due_one_interval_later(store_redis):
    polling_observer("o1", interval=30)
    due = store_redis.zscore(keys.poll(), "o1")
    now = float(store_redis.time()[0])
    assert now + 29 <= due <= now + 31
    assert store_redis.hget(keys.observer("o1"), "poll") == "30.0"
    assert store_redis.ttl(keys.poll()) > 0
    assert schedule.claim_due() == []


def test_another_subscriber_keeps_the_due_time(store_redis):
    polling_observer("o1", interval=30)
    make_due(store_redis, "o1")
    polling_observer("o1", interval=30, subscriber="sub67890")
    assert store_redis.zscore(keys.poll(), "o1") == 0


def test_a_due_observer_is_claimed_once_and_moved_on(store_redis):
    polling_observer("o1", interval=5)
    make_due(store_redis, "o1")
    assert schedule.claim_due() == ["o1"]
    now = float(store_redis.time()[0])
    assert now + 4 <= store_redis.zscore(keys.poll(), "o1") <= now + 6
    assert schedule.claim_due() == []


def test_a_due_observer_still_queued_is_moved_on_but_not_enqueued_twice(store_redis):
    polling_observer("o1", interval=5)
    make_due(store_redis, "o1")
    assert schedule.claim_due() == ["o1"]
    make_due(store_redis, "o1")
    assert schedule.claim_due() == []  # its evaluate task has not started yet
    store_redis.delete(keys.queued("o1"))  # its evaluate task started
    make_due(store_redis, "o1")
    assert schedule.claim_due() == ["o1"]


def test_observers_without_subscribers_or_state_leave_the_schedule(store_redis):
    polling_observer("o1")
    store_redis.delete(keys.observer_subscribers("o1"))
    store_redis.zadd(keys.poll(), {"o1": 0, "ghost": 0})
    assert schedule.claim_due() == []
    assert store_redis.zcard(keys.poll()) == 0


def test_dropping_an_observer_unschedules_it_at_once(store_redis):
    polling_observer("o1")
    subscribers.unsubscribe("o1", "sub12345")
    assert store_redis.zscore(keys.poll(), "o1") is None


def test_concurrent_claims_take_each_due_observer_once(store_redis):
    oids = [f"o{i}" for i in range(300)]
    for oid in oids:
        polling_observer(oid, interval=60)
        make_due(store_redis, oid)
    claims: list[list[str]] = []

    def claim():
        claims.append(schedule.claim_due())

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [oid for batch in claims for oid in batch]
    assert sorted(claimed) == sorted(oids)


def test_each_claim_renews_the_schedule_lifetime(store_redis):
    polling_observer("o1", interval=3600)  # not due for an hour
    store_redis.expire(keys.poll(), 5)
    assert schedule.claim_due() == []
    assert store_redis.ttl(keys.poll()) > 5
