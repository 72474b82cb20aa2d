"""Evaluation statistics: bounded, with lifetimes, and the percentiles reported."""

from reactive_celery.store import keys, observers, stats


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert stats.percentile(values, 50) == 50
    assert stats.percentile(values, 99) == 99
    assert stats.percentile([7.0], 99) == 7
    assert stats.percentile([], 50) is None


def test_timings_are_capped_and_expire(store_redis):
    for i in range(stats.TIMINGS_KEPT + 5):
        stats.record_evaluation(i / 1000)
    summary = stats.summary()
    assert summary["evaluations"] == stats.TIMINGS_KEPT + 5
    assert summary["samples"] == stats.TIMINGS_KEPT
    # 0..1004 ms were recorded; the oldest five fell off, leaving 5..1004.
    assert min(float(v) for v in store_redis.lrange(keys.stats_timings(), 0, -1)) == 5
    assert (summary["p50_ms"], summary["p99_ms"]) == (504, 994)
    for name in (keys.stats_timings(), keys.stats_evaluations()):
        assert 0 < store_redis.ttl(name) <= stats.STATS_TTL


def test_errors_keep_the_view_and_are_capped(store_redis):
    observers.save(
        "o1", spec='{"view": "app.views.V"}', items=[], meta={}, version=1, tables=[], creator=""
    )
    assert stats.record_error("o1", "timeout", "too slow") == "app.views.V"
    for i in range(stats.ERRORS_KEPT):
        stats.record_error(f"gone{i}", "gone", "no spec left")
    errors = stats.last_errors()
    assert len(errors) == stats.ERRORS_KEPT
    assert errors[0]["observer"] == f"gone{stats.ERRORS_KEPT - 1}"
    assert errors[0]["view"] == ""
    assert 0 < store_redis.ttl(keys.stats_errors()) <= stats.STATS_TTL
