"""@reactive: where it may be applied, and clear errors where it may not."""

import pytest
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.views import APIView

from reactive_celery import reactive
from reactive_celery.decorators import declared_tables, options_for
from tests.testapp.views import ItemViewSet


def test_viewset_class_decorates_list():
    assert ItemViewSet.list.reactive_options.per_user is True
    assert ItemViewSet.retrieve.reactive_options is not None


def test_action_attributes_survive_either_order():
    class Views(viewsets.GenericViewSet):
        @reactive
        @action(detail=False)
        def above(self, request):
            return None

        @action(detail=False)
        @reactive
        def below(self, request):
            return None

    for method in (Views.above, Views.below):
        assert method.detail is False
        assert method.reactive_options is not None


def test_options_are_recorded():
    class Views(viewsets.GenericViewSet):
        @reactive(dependencies=["testapp.Tag"], primary_key="slug", per_user=False)
        def list(self, request):
            return None

    options = Views.list.reactive_options
    assert options.dependencies == ("testapp.Tag",)
    assert options.primary_key == "slug"
    assert options.per_user is False


def test_non_viewset_class_is_a_type_error_showing_usage():
    with pytest.raises(TypeError, match="class TaskViewSet"):
        reactive(APIView)


def test_wrong_option_types_are_type_errors():
    with pytest.raises(TypeError, match="dependencies"):
        reactive(dependencies="testapp.Tag")
    with pytest.raises(TypeError, match="primary_key"):
        reactive(primary_key=1)
    with pytest.raises(TypeError, match="per_user"):
        reactive(per_user="no")


def test_decorating_twice_is_a_type_error():
    def list_(self, request):
        return None

    with pytest.raises(TypeError, match="apply it once"):
        reactive(reactive(list_))


def test_subclass_of_reactive_viewset_may_be_decorated_again():
    @reactive(per_user=False)
    class Sub(ItemViewSet):
        pass

    assert Sub.list.reactive_options.per_user is False
    assert ItemViewSet.list.reactive_options.per_user is True


class DeclaredViews(viewsets.GenericViewSet):
    @reactive(dependencies=["testapp.Tag", "custom_table"])
    def list(self, request):
        return None


def test_declared_dependencies_resolve_to_tables():
    assert options_for("tests.testapp.views.ItemViewSet", "list") is not None
    assert options_for("no.such.View", "list") is None
    assert declared_tables("tests.test_decorators.DeclaredViews", "list") == {
        "testapp_tag",
        "custom_table",
    }
