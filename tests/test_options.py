"""Options stored by @reactive, found again from a spec's view path and action."""

from rest_framework import viewsets

from reactive_celery import reactive
from reactive_celery.options import declared_tables, options_for


class DeclaredViews(viewsets.GenericViewSet):
    @reactive(dependencies=["testapp.Tag", "custom_table"])
    def list(self, request):
        return None


def test_declared_dependencies_resolve_to_tables():
    assert options_for("tests.testapp.views.ItemViewSet", "list") is not None
    assert options_for("no.such.View", "list") is None
    assert declared_tables("tests.test_options.DeclaredViews", "list") == {
        "testapp_tag",
        "custom_table",
    }
