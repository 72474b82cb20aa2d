"""The fan-out benchmarks' item accounting: rows hidden by a version gap are coalesced, not lost."""

from tests.benchmarks.fanout import Items, coalesced


def tally(frames: list[tuple[bool, list[int]]]) -> list:
    """One socket's gap intervals after ``frames`` of (after a version gap?, row ids)."""
    results: dict = {"gap_ids": []}
    items = Items(results)
    for gap, ids in frames:
        if gap:
            items.gap()
        items.rows(ids)
    items.close()
    return results["gap_ids"]


def test_a_gap_hides_the_rows_between_the_diffs_around_it():
    gaps = tally([(False, [1]), (False, [2, 3]), (True, [7]), (False, [8])])
    assert gaps == [(3, 7)]
    assert coalesced(gaps, 1, 8) == 3  # 4, 5, 6


def test_a_gap_before_the_first_row_counts_from_the_first_write():
    gaps = tally([(True, [4]), (False, [5])])
    assert coalesced(gaps, 1, 5) == 3  # 1, 2, 3


def test_a_gap_in_a_diff_without_rows_stays_open_until_rows_come():
    gaps = tally([(False, [1]), (True, []), (False, [5])])
    assert coalesced(gaps, 1, 5) == 3


def test_a_gap_at_the_end_counts_to_the_last_write():
    gaps = tally([(False, [1, 2]), (True, [])])
    assert gaps == [(2, None)]
    assert coalesced(gaps, 1, 6) == 4


def test_no_gap_hides_nothing():
    gaps = tally([(False, [1]), (False, [2])])
    assert gaps == [] and coalesced(gaps, 1, 2) == 0
