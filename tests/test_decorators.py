"""@reactive: where it may be applied, and clear errors where it may not."""

import pytest
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.views import APIView

from reactive_celery import reactive
from tests.testapp.ops_views import TickViewSet
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


def test_poll_interval_is_recorded():
    assert TickViewSet.list.reactive_options.poll_interval == 1


def test_poll_interval_with_dependencies_is_a_type_error_naming_both():
    with pytest.raises(TypeError, match="dependencies= or poll_interval=, not both"):
        reactive(dependencies=["testapp.Item"], poll_interval=5)


@pytest.mark.parametrize(
    ("value", "error"), [("5", TypeError), (True, TypeError), (0.5, ValueError), (0, ValueError)]
)
def test_bad_poll_interval_is_refused_at_decoration(value, error):
    with pytest.raises(error, match="poll_interval"):
        reactive(poll_interval=value)
