"""The tables an evaluation reads and the tables a write touches."""

import pytest
from django.db import connection, models
from django.test.utils import isolate_apps

from reactive_celery.dependencies import capture_tables, known_tables, tables_for, tables_of_model
from reactive_celery.exceptions import ConfigurationError
from tests.testapp.models import Category, Item, Tag


@isolate_apps("tests.testapp")
def test_a_write_to_a_child_model_touches_every_concrete_parent():
    class Base(models.Model):
        class Meta:
            abstract = True
            app_label = "testapp"

        def __str__(self):
            return str(self.pk)

    class Place(Base):
        class Meta:
            app_label = "testapp"

    class Restaurant(Place):
        class Meta:
            app_label = "testapp"

    class Pizzeria(Restaurant):
        class Meta:
            app_label = "testapp"

    class Listed(Pizzeria):
        class Meta:
            app_label = "testapp"
            proxy = True

    assert tables_of_model(Place) == {"testapp_place"}
    assert tables_of_model(Restaurant) == {"testapp_restaurant", "testapp_place"}
    assert tables_of_model(Pizzeria) == {"testapp_pizzeria", "testapp_restaurant", "testapp_place"}
    assert tables_of_model(Listed) == tables_of_model(Pizzeria)  # a proxy writes its concrete model


def test_tables_for_takes_models_model_names_and_tables():
    assert tables_for([Item, "testapp.Tag", "testapp.category", "testapp_item_tags"]) == {
        "testapp_item",
        "testapp_tag",
        "testapp_category",
        "testapp_item_tags",
    }
    assert tables_for(["a_materialized_view"]) == {"a_materialized_view"}  # unknown: as given
    assert tables_for([]) == set()


@pytest.mark.parametrize("target", ["testapp.Nothing", "nowhere.Item"])
def test_a_model_name_that_is_not_installed_is_a_configuration_error(target):
    with pytest.raises(ConfigurationError, match=f"{target!r} is neither an installed model"):
        tables_for([target])


@pytest.mark.parametrize("target", [42, None, Item(name="an instance"), object])
def test_anything_else_is_a_configuration_error_showing_the_forms(target):
    with pytest.raises(ConfigurationError, match="must be a model class, 'app_label.Model'"):
        tables_for([target])


def test_known_tables_include_m2m_through_tables():
    assert {"testapp_item", "testapp_item_tags", "auth_user_groups"} <= known_tables()


@pytest.mark.django_db
def test_capture_tables_records_the_tables_the_queries_named():
    item = Item.objects.create(name="a", category=Category.objects.create(name="c"))
    item.tags.add(Tag.objects.create(name="t"))
    with capture_tables() as tables:
        list(item.tags.all())
    assert tables == {"testapp_tag", "testapp_item_tags"}
    with capture_tables() as tables:
        list(Item.objects.select_related("category").prefetch_related("tags"))
    assert tables == {"testapp_item", "testapp_category", "testapp_tag", "testapp_item_tags"}


@pytest.mark.django_db
def test_capture_tables_ignores_names_that_are_not_tables_and_stops_at_the_block():
    with capture_tables() as tables:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 AS testapp_nothing")
        Item.objects.exists()
    Tag.objects.exists()  # after the block: not recorded
    assert tables == {"testapp_item"}
