"""Triggers installed on the test app's tables for one test, removed after."""

import pytest
from django.core.management import call_command

from reactive_celery.pg import triggers


@pytest.fixture
def watched(transactional_db):
    """The test app's tables carry the triggers; the change log starts empty."""
    tables = triggers.install(triggers.observed_tables(["testapp"]))
    yield tables
    call_command("reactive_triggers", "remove")
