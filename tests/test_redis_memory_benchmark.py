"""The Redis memory benchmark's smoke mode: it runs on a real Redis and reports positive figures."""

import redis

from reactive_celery.testing import redis_server
from tests.benchmarks import redis_memory


def test_smoke_run_reports_positive_bytes_per_unit(settings):
    process, url = redis_server.start()
    try:
        settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "REDIS_URL": f"{url}/0"}
        client = redis.Redis.from_url(f"{url}/0")
        figures = redis_memory.measure(lambda: client, observers=5, subscribers=200, runs=1)
        client.close()
    finally:
        redis_server.stop_process(process)
    sizes = [figures[f"observer_{rows}_rows_key"] for rows in redis_memory.ROW_COUNTS]
    assert sizes == sorted(sizes) and sizes[0] > 0  # a bigger result takes more memory
    # 200 sockets: far above the allocator's rounding, so a delta cannot come out 0.
    for name in ("subscriber", "subscriber_key", "subscription", "replay_log", "replay_log_key"):
        assert figures[name] > 0, name
    assert "observer,  1000 rows" in redis_memory.report(figures)
