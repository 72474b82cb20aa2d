"""Key names: one builder each, all under the configured prefix."""

from redis.crc import key_slot

from reactive_celery.store import keys


def test_every_builder_puts_its_key_under_the_prefix(settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "KEY_PREFIX": "app*1"}
    names = [keys.observer("o"), keys.subscriber("s"), keys.dependents("t"), keys.poll()]
    assert names == ["app*1:obs:o", "app*1:sub:s", "app*1:dep:t", "app*1:poll"]
    assert all(name.startswith(keys.prefix()) for name in keys.observer_state("o"))
    assert keys.pattern("obs", "*") == "app\\*1:obs:*"  # a glob in the prefix is literal


def test_ttl_seconds_never_deletes_at_once():
    assert keys.ttl_seconds(0.2) == 1
    assert keys.ttl_seconds(2.1) == 3


def test_on_a_cluster_the_keys_of_one_observer_or_subscriber_share_a_hash_tag(settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "REDIS_URL": "redis+cluster://a:7000/"}
    assert keys.clustered()
    per_observer = [*keys.observer_state("o1"), keys.lock("o1"), keys.retry("o1")]
    per_observer += [keys.waiting("o1")]
    assert all("{o1}" in name for name in per_observer)
    assert {key_slot(name.encode()) for name in per_observer} == {key_slot(b"o1")}
    per_subscriber = [keys.subscriber("s1"), keys.subscriber_observers("s1")]
    assert [key_slot(name.encode()) for name in per_subscriber] == [key_slot(b"s1")] * 2
    assert keys.observer("o1") == "rc:obs:{o1}"


def test_on_one_server_or_behind_sentinel_the_names_carry_no_braces(settings):
    for url in ("redis://h/0", "redis+sentinel://s:26379/m/0"):
        settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "REDIS_URL": url}
        assert not keys.clustered()
        assert keys.observer_subscribers("o1") == "rc:obs:o1:subs"
