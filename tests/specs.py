"""Observer specs as a subscription would store them, for tests that create observers directly."""

from reactive_celery.spec import ObserverSpec


def spec_for(
    path: str = "/api/items/", view: str = "ItemViewSet", *, user=None, query=()
) -> ObserverSpec:
    """The spec of ``tests.testapp.views.<view>``'s list at ``path``, as ``user``."""
    return ObserverSpec.build(
        view=f"tests.testapp.views.{view}",
        action="list",
        path=path,
        query=list(query),
        kwargs={},
        user=user,
        host="testserver",
        secure=False,
        primary_key="id",
    )
