"""A client that stops reading its socket while writes go on (issue 11).

Its kernel buffers fill (a small SO_RCVBUF and large diffs), TCP backpressure
reaches the server's send, and its outbox must coalesce instead of growing;
the clients that read get every version, and the stalled one converges on a
fresh GET once it reads again. The bound is read from the server's metrics.
Uncompressed 50 kB diffs: the server's kernel send buffer (it grows to a few MB)
holds about a hundred of them before the outbox sees any backpressure.
"""

import socket

import pytest
from django.db import transaction
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from reactive_celery import notify
from reactive_celery.consumers.outbox import OUTBOX_LIMIT
from tests import processes
from tests.e2e.consistency import ConsistentClient, assert_converged, quiet
from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]

ROWS = 400
WRITES = 300
#: The kernel doubles it and rounds it up to its minimum: a few kilobytes in flight.
RECEIVE_BUFFER = 4096


class StalledClient(ConsistentClient):
    """A consistent client with a small receive window and a one-message queue."""

    def _dial(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Before connect: the window scale is agreed in the handshake.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.connect(("127.0.0.1", self.port))
        return connect(
            f"ws://127.0.0.1:{self.port}/ws/reactive/",
            sock=sock,
            additional_headers={"Origin": f"http://127.0.0.1:{self.port}"},
            open_timeout=5,
            max_size=None,
            max_queue=1,  # else the client library keeps reading into its own queue
            # Uncompressed, each diff is ~50 kB: enough to fill the server's send buffer
            # (the kernel lets it grow to a few MB) within a few hundred diffs.
            compression=None,
        ).__enter__()


def scraped(http) -> dict[str, float]:
    response = http.get("/internal/metrics")
    assert response.status_code == 200, response.text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name.startswith("reactive_celery_")
    }


@pytest.fixture
def clients():
    started: list[ConsistentClient] = []
    yield started
    for client in started:
        client.stop()


def test_a_client_that_stops_reading_is_coalesced_bounded_and_converges(
    live, spawn, clients, tmp_path
):
    port = processes.free_port()
    spawn(processes.asgi_server, port, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    Item.objects.bulk_create(Item(name="x" * 94, position=i) for i in range(ROWS))
    readers = [ConsistentClient(port, "/api/items/") for _ in range(3)]
    stalled = StalledClient(port, "/api/items/")
    clients += [*readers, stalled]
    for client in clients:
        client.start()
    for client in clients:
        assert client.ready.wait(30), client.url
    stalled.reading.clear()

    for write in range(WRITES):
        before = [reader.version for reader in readers]
        with transaction.atomic():
            Item.objects.update(name=f"{write:04}" + "y" * 90)
            notify(Item)  # every row changed: one diff of ROWS rows

        # One diff per write: wait until every reader has it before the next.
        def moved(before=before):
            return all(r.version != v for r, v in zip(readers, before, strict=True))

        live.wait_for(moved, 30)
    quiet(live.redis, readers)
    http = live.http(port=port)
    metrics = scraped(http)

    assert [(r.gaps, r.reconnects, r.errors) for r in readers] == [(0, 0, [])] * 3
    assert_converged(http, readers)
    # Backpressure reached the server: the stalled socket's diffs were coalesced ...
    assert metrics["reactive_celery_frames_coalesced_total"] > 0
    # ... and no socket ever had more than the outbox's limit waiting.
    assert 0 < metrics["reactive_celery_outbox_peak_frames"] <= OUTBOX_LIMIT

    stalled.reading.set()
    quiet(live.redis, clients)
    # It resynced from the version it held: on the version gap the coalescing left, or,
    # stalled past uvicorn's ping timeout (its pong queues behind megabytes), on the
    # reconnect after the server dropped it. Either way it must match a fresh GET.
    assert stalled.gaps + stalled.reconnects >= 1
    assert_converged(http, clients)
