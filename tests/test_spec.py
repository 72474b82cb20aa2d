"""Observer specs: canonical JSON, ids shared by identical subscriptions."""

from reactive_celery.spec import ObserverSpec


def build(**overrides):
    values = dict(
        view="app.views.TaskViewSet",
        action="list",
        path="/api/tasks/",
        query=[("b", "2"), ("a", "1"), ("observe", "sub123456")],
        kwargs={},
        user="7",
        host="example.com",
        secure=False,
        primary_key="id",
    )
    values.update(overrides)
    return ObserverSpec.build(**values)


def test_query_is_sorted_and_observe_dropped():
    spec = build()
    assert spec.query == (("a", "1"), ("b", "2"))
    assert spec.query_string == "a=1&b=2"


def test_same_call_from_other_subscribers_has_the_same_id():
    assert build().id == build(query=[("a", "1"), ("b", "2"), ("observe", "other9999")]).id


def test_user_query_and_kwargs_change_the_id():
    ids = {
        build().id,
        build(user="8").id,
        build(user=None).id,
        build(query=[("a", "2")]).id,
        build(kwargs={"pk": 3}).id,
    }
    assert len(ids) == 5


def test_json_round_trip():
    spec = build(kwargs={"pk": 3})
    assert ObserverSpec.from_json(spec.to_json()) == spec
    assert spec.to_json() == ObserverSpec.from_json(spec.to_json()).to_json()
    assert "pickle" not in spec.to_json()
    assert len(spec.id) == 64


def test_the_canonical_json_and_id_stay_as_stored_observers_have_them():
    # A change here would give every stored observer a new id on upgrade.
    spec = build(kwargs={"pk": 3})
    assert spec.to_json() == (
        '{"action":"list","host":"example.com","kwargs":[["pk","3"]],"path":"/api/tasks/",'
        '"primary_key":"id","query":[["a","1"],["b","2"]],"secure":false,"user":"7",'
        '"view":"app.views.TaskViewSet"}'
    )
    assert spec.id == "3e6a8dd4c344b5f08c962c102444deb275ddfb25db9ba2fd3a7d272c1433f0a8"
