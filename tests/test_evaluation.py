"""Running an observed view from its spec, as a worker does."""

import datetime
import decimal
import uuid
from dataclasses import replace

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.cache import cache
from rest_framework.response import Response

from reactive_celery.evaluation import (
    GetRequest,
    Result,
    evaluate_spec,
    permitted,
    result_from_response,
)
from reactive_celery.exceptions import ObserverError, ObserverForbidden, ObserverGone
from tests.test_observer import spec_for
from tests.testapp.models import Category, Item, Tag


def test_a_get_request_carries_path_query_host_and_scheme():
    request = GetRequest("/api/items/", "enabled=true&a=1&a=2", "localhost:8443", True, "10.0.0.1")
    assert (request.method, request.path, request.path_info) == (
        "GET",
        "/api/items/",
        "/api/items/",
    )
    assert request.GET.getlist("a") == ["1", "2"] and request.GET["enabled"] == "true"
    assert not request.GET._mutable
    assert (request.META["SERVER_NAME"], request.META["SERVER_PORT"]) == ("localhost", "8443")
    assert request.META["REMOTE_ADDR"] == "10.0.0.1"
    assert request.META["HTTP_ACCEPT"] == "application/json"
    assert request.is_secure()
    assert request.build_absolute_uri() == "https://localhost:8443/api/items/?enabled=true&a=1&a=2"


def test_a_get_request_defaults_the_port_from_the_scheme():
    plain = GetRequest("/", "", "testserver", False)
    assert (plain.META["SERVER_PORT"], plain.scheme, "REMOTE_ADDR" in plain.META) == (
        "80",
        "http",
        False,
    )
    assert GetRequest("/", "", "testserver", True).META["SERVER_PORT"] == "443"


def test_run_as_sets_the_user_for_django_and_drf():
    user = AnonymousUser()
    request = GetRequest("/", "", "testserver", False)
    assert request.run_as(user) is request
    assert request.user is user and request._force_auth_user is user


@pytest.mark.parametrize(
    ("data", "items", "meta"),
    [
        ([{"id": 1}, {"id": 2}], [{"id": 1}, {"id": 2}], {}),
        ({"id": 1, "name": "one"}, [{"id": 1, "name": "one"}], {}),
        (
            {"count": 9, "next": "n", "previous": None, "results": [{"id": 1}], "extra": 1},
            [{"id": 1}],
            {"count": 9, "next": "n", "previous": None},
        ),
        ({"results": "not a list"}, [{"results": "not a list"}], {}),  # one object after all
        ([], [], {}),
    ],
)
def test_result_from_response_shapes(data, items, meta):
    result = result_from_response(Response(data))
    assert (result.items, result.meta, result.tables) == (items, meta, set())


def test_result_from_response_makes_values_json_ready():
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    key = uuid.UUID(int=1)
    result = result_from_response(
        Response([{"id": key, "price": decimal.Decimal("1.50"), "at": when}])
    )
    assert result.items == [{"id": str(key), "price": 1.5, "at": "2024-01-02T03:04:05Z"}]


@pytest.mark.parametrize("data", ["text", 3, None])
def test_result_from_response_refuses_what_is_not_a_list_or_object(data):
    with pytest.raises(ObserverError, match="must return a list, a paginated list or one object"):
        result_from_response(Response(data))


@pytest.mark.django_db
def test_evaluate_spec_returns_the_items_and_the_tables_read():
    item = Item.objects.create(name="a", category=Category.objects.create(name="c"))
    item.tags.add(Tag.objects.create(name="t"))
    result = evaluate_spec(spec_for("/api/detailed/", "DetailedItemViewSet"), None)
    assert [row["name"] for row in result.items] == ["a"]
    assert result.tables == {"testapp_item", "testapp_category", "testapp_tag", "testapp_item_tags"}


@pytest.mark.django_db
def test_evaluate_spec_keeps_the_pagination_fields():
    Item.objects.bulk_create([Item(name=str(i)) for i in range(12)])
    result = evaluate_spec(
        spec_for("/api/limited/", "LimitedItemViewSet", query=[("offset", "10")]), ""
    )
    assert len(result.items) == 2
    assert result.meta == {
        "count": 12,
        "next": None,
        "previous": "http://testserver/api/limited/?limit=10",
    }


@pytest.mark.django_db
def test_a_404_is_an_empty_result_that_still_follows_its_table():
    spec = replace(spec_for("/api/items/999999/"), action="retrieve")
    result = evaluate_spec(spec, None)
    assert (result.items, result.meta) == ([], {})
    assert result.tables == {"testapp_item"}  # the row may appear later


@pytest.mark.django_db
def test_a_403_is_observer_forbidden():
    user = User.objects.create(username="not-staff")
    with pytest.raises(ObserverForbidden):
        evaluate_spec(spec_for("/api/staff/", "StaffItemViewSet"), str(user.pk))
    with pytest.raises(ObserverForbidden):
        evaluate_spec(spec_for("/api/own/", "OwnItemViewSet"), None)  # anonymous
    staff = User.objects.create(username="staff", is_staff=True)
    assert evaluate_spec(spec_for("/api/staff/", "StaffItemViewSet"), str(staff.pk)).items == []


@pytest.mark.django_db
def test_a_user_who_is_gone_or_inactive_stops_the_observer():
    with pytest.raises(ObserverGone, match="no longer exists"):
        evaluate_spec(spec_for("/api/own/", "OwnItemViewSet"), "999999")
    user = User.objects.create(username="inactive", is_active=False)
    with pytest.raises(ObserverForbidden, match="deactivated"):
        evaluate_spec(spec_for("/api/own/", "OwnItemViewSet"), str(user.pk))


@pytest.mark.django_db
def test_a_path_that_no_longer_resolves_or_names_another_view_is_observer_gone():
    with pytest.raises(ObserverGone, match="/api/nothing/ no longer resolves to a view"):
        evaluate_spec(spec_for("/api/nothing/"), None)
    moved = spec_for("/api/plain/", "ItemViewSet")  # the URL now serves PlainItemViewSet
    with pytest.raises(ObserverGone, match="no longer resolves to tests.testapp.views.ItemViewSet"):
        evaluate_spec(moved, None)


@pytest.mark.django_db
def test_evaluations_are_not_throttled():
    cache.clear()
    spec = spec_for("/api/throttled/", "ThrottledItemViewSet")
    try:
        for _ in range(3):  # the view allows anonymous clients one GET a minute
            assert isinstance(evaluate_spec(spec, None), Result)
    finally:
        cache.clear()


@pytest.mark.django_db
def test_the_throttle_would_have_refused_a_second_request(client):
    cache.clear()
    try:
        assert client.get("/api/throttled/").status_code == 200
        assert client.get("/api/throttled/").status_code == 429
    finally:
        cache.clear()


@pytest.mark.django_db
def test_permitted_admits_whom_the_permission_classes_admit_now():
    staff = User.objects.create(username="staff", is_staff=True)
    plain = User.objects.create(username="plain")
    gone = User.objects.create(username="gone", is_staff=True, is_active=False)
    users = {"", str(staff.pk), str(plain.pk), str(gone.pk), "999999"}
    open_view = spec_for()  # AllowAny: anonymous subscribers stay too
    assert permitted(open_view, users) == {"", str(staff.pk), str(plain.pk)}
    staff_only = spec_for("/api/staff/", "StaffItemViewSet")
    assert permitted(staff_only, users) == {str(staff.pk)}
