"""Key names: one builder each, all under the configured prefix."""

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
