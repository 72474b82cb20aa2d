"""``POST unsubscribe?observer=&subscriber=``: the seed protocol's HTTP endpoint."""

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIRequestFactory, force_authenticate

from reactive_celery.store import observers, subscribers
from reactive_celery.views import UnsubscribeView

pytestmark = pytest.mark.django_db

SID = "subscriber-1"


def post(query: str, user=None):
    request = APIRequestFactory().post(f"/api/queryobserver/unsubscribe?{query}")
    if user is not None:
        force_authenticate(request, user)
    return UnsubscribeView.as_view()(request)


def following(oid: str, sid: str = SID, user: str = "") -> None:
    subscribers.register(sid, f"specific.chan!{sid}", user)
    observers.save(oid, spec="{}", items=[], meta={}, version=1, tables=["t"], creator="")
    subscribers.subscribe(oid, sid)


@pytest.mark.parametrize("query", ["", "observer=o1", f"subscriber={SID}", "observer=&subscriber="])
def test_both_ids_are_required(store_redis, query):
    response = post(query)
    assert response.status_code == 400
    assert "?observer=<id> and ?subscriber=<id>" in str(response.data["detail"])


@pytest.mark.parametrize("sid", ["never-registered", "bad!", "x"])
def test_an_unknown_or_malformed_subscriber_is_404(store_redis, sid):
    response = post(f"observer=o1&subscriber={sid}")
    assert response.status_code == 404
    assert response.data["detail"] == "Unknown subscriber id."


def test_an_observer_the_subscriber_does_not_follow_is_404(store_redis):
    following("o1")
    response = post(f"observer=o2&subscriber={SID}")
    assert response.status_code == 404
    assert "does not observe" in response.data["detail"]
    assert subscribers.follows(SID, "o1")


def test_another_users_subscriber_is_403(store_redis):
    owner = User.objects.create(username="owner")
    following("o1", user=str(owner.pk))
    assert post(f"observer=o1&subscriber={SID}").status_code == 403
    intruder = User.objects.create(username="intruder")
    assert post(f"observer=o1&subscriber={SID}", user=intruder).status_code == 403
    assert subscribers.follows(SID, "o1")
    assert post(f"observer=o1&subscriber={SID}", user=owner).status_code == 204


def test_unsubscribing_is_204_and_drops_an_observer_left_alone(store_redis):
    following("o1")
    following("o1", sid="subscriber-2")
    response = post(f"observer=o1&subscriber={SID}")
    assert response.status_code == 204 and response.data is None
    assert subscribers.followers("o1") == {"subscriber-2"}
    assert post(f"observer=o1&subscriber={SID}").status_code == 404  # already gone
    assert post("observer=o1&subscriber=subscriber-2").status_code == 204
    assert observers.load("o1") is None


def test_the_endpoint_is_mounted_where_the_project_includes_it(store_redis, client):
    following("o1")
    response = client.post(f"/api/queryobserver/unsubscribe?observer=o1&subscriber={SID}")
    assert response.status_code == 204
