"""Batches of script calls, on one server and across a cluster's masters."""

from reactive_celery.store import keys, scripts

COUNT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def test_every_call_runs_once_and_answers_in_order(store_redis):
    calls = [([keys.starts(f"o{i}")], [i + 1]) for i in range(20)]
    assert scripts.run_many(store_redis, COUNT, calls) == list(range(1, 21))
    assert scripts.run_many(store_redis, COUNT, []) == []


def test_a_redis_that_lost_its_scripts_runs_each_call_still_once(store_redis):
    calls = [([keys.starts(f"o{i}")], [1]) for i in range(20)]
    scripts.run_many(store_redis, COUNT, calls)
    store_redis.script_flush()  # as after a restart: the cached SHA is unknown now
    assert scripts.run_many(store_redis, COUNT, calls) == [2] * 20
