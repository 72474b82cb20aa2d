"""The wire format: batched diffs apply, frames keep their shapes, reactive.js agrees."""

import re
from pathlib import Path

from hypothesis import given

from reactive_celery import protocol
from reactive_celery.diff import diff
from tests.test_diff import items, keyed_lists

CLIENT = Path(protocol.__file__).parent / "static" / "reactive_celery" / "reactive.js"


@given(keyed_lists, keyed_lists)
def test_applying_the_batched_diff_gives_the_new_list(old, new):
    frame = protocol.batch(diff(old, new, "id"), "id")
    assert protocol.apply_batch(old, frame, "id") == new


def test_position_only_change_is_moved_without_data():
    old = items([1, 2, 3])
    new = [old[2], old[0], old[1]]
    frame = protocol.batch(diff(old, new, "id"), "id")
    assert frame == {"removed": [], "added": [], "changed": [], "moved": [{"order": 0, "pk": 3}]}


def test_one_group_message_gives_one_batched_frame_and_a_seed_frame_per_item():
    changes = diff(items([1, 2]), items([2, 3]), "id")
    event = protocol.diff_message("o" * 64, 8, "id", changes)
    assert event["type"] == protocol.GROUP_DIFF
    (frame,) = protocol.batched_diffs(event)
    assert (frame["type"], frame["version"], frame["removed"]) == ("diff", 8, [1])
    seed = protocol.seed_diffs(event)
    assert [f["msg"] for f in seed] == [c["msg"] for c in changes]
    assert all(f["version"] == 8 and f["observer"] == "o" * 64 for f in seed)
    assert {f["msg"] for f in seed} <= protocol.SEED_MESSAGES


def test_a_stop_reaches_both_protocols_with_its_code():
    event = protocol.stop_message("o" * 64, "gone", "The view is gone.")
    assert event["type"] == protocol.GROUP_ERROR and event["code"] in protocol.STOP_CODES
    assert protocol.batched_stop(event) == {
        "type": "error",
        "observer": "o" * 64,
        "code": "gone",
        "message": "The view is gone.",
    }
    assert protocol.seed_stop(event)["error"] == "The view is gone."
    assert protocol.request_error("bad_json", "x")["type"] in protocol.SERVER_FRAMES


def test_ids_have_their_documented_forms():
    assert protocol.SUBSCRIBER_ID.fullmatch("a" * 8) and not protocol.SUBSCRIBER_ID.fullmatch(
        "a" * 7
    )
    assert not protocol.SUBSCRIBER_ID.fullmatch("a" * 65)
    assert protocol.OBSERVER_ID.fullmatch("0" * 64) and not protocol.OBSERVER_ID.fullmatch("G" * 64)


def test_reactive_js_speaks_this_protocol():
    source = CLIENT.read_text()
    switch = source[source.index("switch (message.type)") :]
    switch = switch[: switch.index("\n    }\n")]
    handled = set(re.findall(r'case "(\w+)":', switch))
    # A pong only proves the socket alive; the client needs no handler for it.
    assert handled == protocol.SERVER_FRAMES - {"pong"}
    sent = set(re.findall(r'_request\("(\w+)"', source))
    sent |= set(re.findall(r'_send\(\{ type: "(\w+)"', source))
    assert sent == protocol.REQUESTS
    compared = set(re.findall(r'error\.code [!=]== "(\w+)"', source))
    for name in ("TRANSIENT_CODES", "PACING_CODES"):
        codes = re.search(name + r" = new Set\(\[([^\]]*)\]\)", source)
        compared |= set(re.findall(r'"(\w+)"', codes.group(1)))
    assert compared and compared <= protocol.REQUEST_ERRORS
    types = CLIENT.with_suffix(".d.ts").read_text()
    declared = types[types.index("type RequestErrorCode") :]
    declared = declared[: declared.index(";")]
    assert set(re.findall(r'"(\w+)"', declared)) == protocol.REQUEST_ERRORS
    closes = {int(code) for code in re.findall(r"\b(4\d{3})\b", source)}
    assert closes <= protocol.CLOSE_CODES
