"""The change log triggers, and ``manage.py reactive_triggers``."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from reactive_celery.exceptions import ConfigurationError
from reactive_celery.pg import triggers
from tests.testapp.models import Item, Tag


def log_rows() -> list[tuple[str, list[str] | None]]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT table_name, pks FROM {triggers.LOG_TABLE} ORDER BY id")
        return [(table, pks) for table, pks in cursor.fetchall()]


def test_observed_tables_are_managed_models_with_their_m2m_tables_and_pk_columns():
    tables = triggers.observed_tables()
    assert tables["testapp_item"] == "id"
    assert tables["testapp_item_tags"] == "id"
    assert not set(tables) & triggers.EXCLUDED_TABLES
    assert set(triggers.observed_tables(["testapp.Tag"])) == {"testapp_tag"}


def test_an_unknown_label_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="'nope' is neither an installed app label"):
        triggers.observed_tables(["nope"])


@pytest.mark.sqlite
def test_other_databases_get_a_clear_error_and_nothing_changes(db):
    out = StringIO()
    with pytest.raises(CommandError, match="is sqlite: triggers and reactive_listen need"):
        call_command("reactive_triggers", "install", stdout=out)
    with pytest.raises(CommandError, match="need PostgreSQL"):
        call_command("reactive_listen", stdout=out)
    assert out.getvalue() == ""


pg = pytest.mark.postgres


@pg
def test_install_is_idempotent_and_list_and_remove_undo_it(watched):
    out = StringIO()
    call_command("reactive_triggers", "install", "testapp", stdout=out)
    assert "Triggers installed on" in out.getvalue()
    assert triggers.installed_tables() == sorted(watched)
    call_command("reactive_triggers", "remove", stdout=out)
    assert triggers.installed_tables() == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [triggers.LOG_TABLE])
        assert cursor.fetchone() == (None,)


@pg
def test_list_takes_no_labels(watched):
    with pytest.raises(CommandError, match="'list' takes no labels"):
        call_command("reactive_triggers", "list", "testapp")


@pg
def test_each_statement_logs_one_row_with_its_keys(watched):
    a, b = Item.objects.bulk_create([Item(name="a"), Item(name="b")])
    Item.objects.filter(pk__in=[a.pk, b.pk]).update(name="c")
    Item.objects.filter(name="nothing").update(name="d")  # no row: nothing logged
    Item.objects.filter(pk=a.pk).delete()
    keys = sorted([str(a.pk), str(b.pk)])
    assert [(table, sorted(pks or [])) for table, pks in log_rows()] == [
        ("testapp_item", keys),
        ("testapp_item", keys),
        ("testapp_item", [str(a.pk)]),
    ]


@pg
def test_an_update_that_moves_a_primary_key_logs_both_keys(watched):
    tag = Tag.objects.create(name="t")
    Tag.objects.filter(pk=tag.pk).update(id=tag.pk + 100)
    assert sorted(log_rows()[-1][1]) == sorted([str(tag.pk), str(tag.pk + 100)])


@pg
def test_a_statement_over_the_limit_and_truncate_log_the_whole_table(watched):
    Item.objects.bulk_create([Item(name=str(i)) for i in range(triggers.MAX_PKS + 1)])
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE testapp_category CASCADE")
    assert ("testapp_item", None) in log_rows() and ("testapp_category", None) in log_rows()


@pg
def test_a_rolled_back_write_logs_nothing(watched):
    with pytest.raises(RuntimeError), transaction.atomic():
        Item.objects.create(name="gone")
        raise RuntimeError
    assert log_rows() == []


@pg
def test_m2m_writes_are_logged_on_the_through_table(watched):
    item, tag = Item.objects.create(name="i"), Tag.objects.create(name="t")
    item.tags.add(tag)
    assert log_rows()[-1][0] == "testapp_item_tags"
