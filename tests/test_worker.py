"""Connections kept across a worker's tasks, against the real database."""

import pytest
from celery.signals import task_prerun
from django.db import OperationalError, connection, connections

from reactive_celery import worker
from tests.testapp.models import Item


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_failed_but_answers_is_kept_and_checked_again():
    Item.objects.count()
    raw = connection.connection
    connection.errors_occurred = True  # as after an IntegrityError the task handled
    connection.health_check_done = True
    task_prerun.send(sender=None)  # connected in AppConfig.ready
    assert connection.connection is raw
    assert (connection.errors_occurred, connection.health_check_done) == (False, False)


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_database_dropped_is_closed_before_the_next_task():
    Item.objects.count()
    if connection.vendor == "postgresql":
        pid = connection.connection.info.backend_pid
        other = connections.create_connection("default")
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        other.close()
        with pytest.raises(OperationalError):
            Item.objects.count()
        worker.check_connections()
        assert connection.connection is None
    else:
        # SQLite has no server to drop it: an open file stays usable.
        connection.errors_occurred = True
        worker.check_connections()
        assert connection.connection is not None
    assert Item.objects.count() == 0  # the next task connects anew
