"""The Redis memory benchmark's smoke run: every figure measured, and positive."""

import json

from tests.benchmarks import redis_memory


def test_the_memory_benchmark_reports_every_figure(store_redis, tmp_path, capsys):
    out = tmp_path / "memory.json"
    assert (
        redis_memory.main(
            ["--runs", "1", "--observers", "10", "--subscribers", "20", "--json", str(out)]
        )
        == 0
    )
    medians = json.loads(out.read_text())["medians"]
    assert set(medians) >= {"observer_10", "observer_1000", "log_100", "subscriber", "subscription"}
    assert all(value > 0 for value in medians.values()), medians
    # A larger result costs more: the figures measure what was stored.
    assert medians["observer_1000"] > medians["observer_10"]
    assert "| subscription (a socket following an observer) |" in capsys.readouterr().out
