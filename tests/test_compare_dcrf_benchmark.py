"""compare_dcrf's summary over runs (the runs themselves are the benchmark's, not CI's)."""

from tests.benchmarks import compare_dcrf


def test_runs_are_summarised_by_the_median_of_each_figure():
    runs = [
        {"latency_ms_p50": 30.0, "latency_ms_p99": 90.0, "items_lost": 0, "cpu_s_server": 3.0},
        {"latency_ms_p50": 10.0, "latency_ms_p99": 300.0, "items_lost": 2, "cpu_s_server": 2.0},
        {"latency_ms_p50": 20.0, "latency_ms_p99": 100.0, "items_lost": 0, "cpu_s_server": 9.0},
    ]
    summary = compare_dcrf._medians("reactive", 200, 10.0, runs)
    assert summary == {
        "backend": "reactive",
        "sockets": 200,
        "rate": 10.0,
        "median_of": 3,
        "latency_ms_p50": 20.0,
        "latency_ms_p99": 100.0,
        "items_lost": 0,
        "cpu_s_server": 3.0,
    }


def test_a_figure_one_run_lacks_is_left_out_of_the_summary():
    runs = [{"subscribe_ms_p99": 5.0}, {"subscribe_ms_p99": None}]
    assert "subscribe_ms_p99" not in compare_dcrf._medians("dcrf", 50, 10.0, runs)
