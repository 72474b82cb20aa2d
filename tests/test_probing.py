"""A worker process's probe cache: what a dispatch builds once, and what it never keeps.

Dispatches run in-process over the real Redis and broker as in ``test_dispatch``;
a build is one call of ``invalidation.probe_queryset`` (the view's
``get_queryset`` and filter backends).
"""

import time

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import connection
from django.db.models import Count
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from reactive_celery import invalidation, probing
from reactive_celery.store import observers
from tests.specs import spec_for
from tests.test_dispatch import groups, run_dispatches, subscribed
from tests.test_invalidation import changed, evaluations, run_queued
from tests.testapp.models import Category, Item, Tag

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def builds(monkeypatch):
    """The probe querysets built so far, by the observer's path."""
    counted: list[str] = []
    real = invalidation.probe_queryset

    def counting(spec, user=None):
        counted.append(spec.path)
        return real(spec, user)

    monkeypatch.setattr(invalidation, "probe_queryset", counting)
    return counted


def probe_cache(seconds):
    return override_settings(
        REACTIVE_CELERY={**settings.REACTIVE_CELERY, "PROBE_CACHE_SECONDS": seconds}
    )


def test_a_second_dispatch_reuses_the_probes_the_first_built(store_redis, broker, builds):
    oids = groups(10)
    before = evaluations(oids)
    Item.objects.create(name="a", position=3)
    run_dispatches(broker)
    assert len(builds) == 10
    Item.objects.create(name="b", position=4)
    assert len(run_dispatches(broker)) == 1  # still one probe query
    assert len(builds) == 10
    run_queued(broker)
    # The cached probes decide as built ones do: one evaluation per write, of its group.
    assert changed(oids, before) == [1 if g in (3, 4) else 0 for g in range(10)]


def test_with_no_cache_every_dispatch_builds_its_probes(store_redis, broker, builds):
    oids = groups(5)
    with probe_cache(0):
        Item.objects.create(name="a", position=7)
        run_dispatches(broker)
        Item.objects.create(name="b", position=8)
        run_dispatches(broker)
    assert len(builds) == 10
    assert changed(oids, [1] * 5) == [0] * 5


def test_a_cached_probe_is_built_anew_once_it_expired(store_redis, broker, builds):
    groups(3)
    with probe_cache(0.2):
        Item.objects.create(name="a", position=7)
        run_dispatches(broker)
        time.sleep(0.3)
        Item.objects.create(name="b", position=8)
        run_dispatches(broker)
    assert len(builds) == 6


def test_a_probe_whose_building_ran_a_query_is_never_kept(store_redis, broker, builds):
    """Its SQL embeds a row's value: the leader's move must reach the next probe."""
    Item.objects.create(name="x", position=1)
    Item.objects.create(name="y", position=2)
    leader = Item.objects.create(name="leader", position=1)
    oid = subscribed(spec_for("/api/leader-group/", "LeaderGroupViewSet"))
    groups(1)  # a table's lone observer is decided under its lock, without a dispatch
    assert [i["name"] for i in observers.load(oid).items] == ["x", "leader"]
    Item.objects.create(name="elsewhere", position=9)
    run_queued(broker)
    assert builds.count("/api/leader-group/") == 1
    leader.position = 2
    leader.save()  # held in the result: evaluated, no probe
    run_queued(broker)
    assert [i["name"] for i in observers.load(oid).items] == ["y", "leader"]
    Item.objects.create(name="z", position=2)  # matches only the probe built after the move
    run_queued(broker)
    assert builds.count("/api/leader-group/") == 2
    assert [i["name"] for i in observers.load(oid).items] == ["y", "leader", "z"]


def test_a_change_to_the_user_builds_their_probe_anew(store_redis, broker, builds):
    user = User.objects.create_user("ann")
    oid = subscribed(spec_for("/api/own/", "OwnItemViewSet", user=str(user.pk)), user)
    groups(1)  # a table's lone observer is decided under its lock, without a dispatch
    Item.objects.create(name="not hers", position=1)
    run_queued(broker)
    Item.objects.create(name="not hers either", position=2)
    run_queued(broker)
    assert builds.count("/api/own/") == 1
    user.is_staff = True  # a view may filter on any of the user's fields
    user.save()
    Item.objects.create(name="still not hers", position=3)
    run_queued(broker)
    assert builds.count("/api/own/") == 2
    assert observers.load(oid).items == []


def test_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(probing, "_MAX_CACHED", 3)
    probe = probing.compile_probe(Item.objects.all())
    for n in range(7):
        probing.cached(f"o{n}", "{}", AnonymousUser(), Item.objects.all)
    assert len(probing._cache) <= 3
    assert probing.cached("o6", "{}", AnonymousUser(), lambda: pytest.fail("rebuilt")) == probe


def test_probes_built_together_expire_apart():
    with probe_cache(10):
        started = time.monotonic()
        for n in range(50):
            probing.cached(f"o{n}", "{}", AnonymousUser(), Item.objects.all)
        left = [entry.expires - started for entry in probing._cache.values()]
    assert all(4.9 < seconds <= 10.1 for seconds in left)
    assert max(left) - min(left) > 1


def test_a_large_probe_runs_without_parallel_workers_on_postgresql():
    """PostgreSQL gathers a long UNION ALL of index lookups over workers: slower, and
    two processes per probe. SQLite has no such thing and gets the query alone."""
    a = Item.objects.create(name="a", position=1)
    probes = [
        (probing.compile_probe(Item.objects.filter(position=n % 3)), [a.pk]) for n in range(60)
    ]
    postgres = connection.vendor == "postgresql"
    with CaptureQueriesContext(connection) as queries:
        assert probing.run(probes) == {n for n in range(60) if n % 3 == 1}
        assert probing.run(probes[:5]) == {1, 4}
    sent = [q["sql"] for q in queries.captured_queries]
    settings_sent = [sql for sql in sent if "max_parallel_workers_per_gather" in sql]
    assert settings_sent == (["SET LOCAL max_parallel_workers_per_gather = 0"] if postgres else [])
    assert sum("_reactive_probe" in sql for sql in sent) == 2
    assert not connection.in_atomic_block


def test_a_lone_observer_decided_under_its_lock_reuses_its_probe(store_redis, broker, monkeypatch):
    (oid,) = groups(1)  # a table's only precise observer: no dispatch, its evaluation task probes
    built = []
    real = invalidation.build_view

    def counting(spec, user):
        built.append(spec.path)
        return real(spec, user)

    monkeypatch.setattr(invalidation, "build_view", counting)
    before = evaluations([oid])
    for position in (5, 6, 7):
        Item.objects.create(name="elsewhere", position=position)
        run_queued(broker)
    assert built == ["/api/groups/"]
    assert changed([oid], before) == [0]
    Item.objects.create(name="mine", position=0)
    run_queued(broker)
    assert changed([oid], before) == [1]
    assert [i["name"] for i in observers.load(oid).items] == ["mine"]


def test_a_settings_change_forgets_the_cached_probes():
    probing.cached("o", "{}", AnonymousUser(), Item.objects.all)
    assert probing._cache
    with probe_cache(10):
        assert not probing._cache


def probe(querysets):
    """Indexes of the querysets holding any of their keys, as ``run`` answers for probes."""
    return probing.run([(probing.compile_probe(qs), pks) for qs, pks in querysets])


def test_probe_answers_for_many_querysets_in_one_query(django_assert_num_queries):
    a = Item.objects.create(name="a", position=1)
    b = Item.objects.create(name="b", position=2)
    querysets = [
        (Item.objects.filter(position=1), [a.pk]),
        (Item.objects.filter(position=1), [b.pk]),
        (Item.objects.filter(position=2), [a.pk, b.pk]),
        (Item.objects.all(), [a.pk]),
    ]
    with django_assert_num_queries(1):
        assert probe(querysets) == {0, 2, 3}


def test_probe_takes_joins_aggregates_distinct_and_excludes(django_assert_num_queries):
    food = Category.objects.create(name="food")
    tag = Tag.objects.create(name="t")
    a = Item.objects.create(name="a", position=1, category=food)
    b = Item.objects.create(name="b", position=2)
    b.tags.add(tag)
    querysets = [
        (Item.objects.filter(category__name="food"), [a.pk, b.pk]),
        (Item.objects.annotate(n=Count("tags")).filter(n__gt=0), [a.pk]),
        (Item.objects.annotate(n=Count("tags")).filter(n__gt=0), [b.pk]),
        (Item.objects.filter(tags__name="t").distinct(), [a.pk, b.pk]),
        (Item.objects.exclude(name__startswith="a%"), [str(a.pk)]),  # a literal %, a str pk
        (Item.objects.none(), [a.pk]),
    ]
    with django_assert_num_queries(1):
        assert probe(querysets) == {0, 2, 3, 4}


def test_probe_chunks_past_the_compound_select_limit(monkeypatch, django_assert_num_queries):
    a = Item.objects.create(name="a", position=1)
    monkeypatch.setattr(probing, "PROBE_CHUNK", 2)
    querysets = [(Item.objects.filter(position=n % 2), [a.pk]) for n in range(5)]
    with django_assert_num_queries(3):
        assert probe(querysets) == {1, 3}


def test_probes_of_one_shape_share_one_part_of_the_query(django_assert_num_queries):
    a = Item.objects.create(name="a", position=1)
    b = Item.objects.create(name="b", position=2)
    querysets = [(Item.objects.filter(position=n % 10), [a.pk, b.pk]) for n in range(100)]
    querysets += [(Item.objects.filter(name="b"), [b.pk]), (Item.objects.all(), [a.pk])]
    with CaptureQueriesContext(connection) as queries:
        assert probe(querysets) == {n for n in range(100) if n % 10 in (1, 2)} | {100, 101}
    (sql,) = [q["sql"] for q in queries.captured_queries if "_reactive_probe" in q["sql"]]
    # The hundred are one part: the database plans one lookup, not a hundred.
    assert sql.count("UNION ALL") == (2 if connection.vendor in ("postgresql", "sqlite") else 101)


def test_grouped_probes_answer_as_probes_one_by_one(monkeypatch):
    import random

    rng = random.Random(7)
    items = [
        Item.objects.create(name=rng.choice("abc"), position=rng.randrange(4)) for _ in range(12)
    ]
    shapes = [
        lambda v: Item.objects.filter(position=v % 4),
        lambda v: Item.objects.filter(name="abc"[v % 3], position__gte=v % 2),
        lambda v: Item.objects.filter(name__startswith="a%" if v % 2 else "b"),
        lambda v: Item.objects.extra(where=["position %% 2 = %s"], params=[v % 2]),
        lambda v: Item.objects.exclude(position=v % 4).filter(name="a"),
    ]
    keys = [[rng.choice(items).pk for _ in range(rng.randrange(1, 4))] for _ in range(3)]
    querysets = [(shape(v), keys[v % 3]) for shape in shapes for v in range(30)]
    grouped = probe(querysets)
    monkeypatch.setattr(probing, "_VALUES_VENDORS", ())
    assert grouped == probe(querysets)
    assert grouped and len(grouped) < len(querysets)  # the workload tells matches apart


def test_a_grouped_probe_the_database_refuses_is_run_one_by_one(monkeypatch, caplog):
    a = Item.objects.create(name="a", position=1)
    real = probing._select

    def broken(connection, members):
        sql, params = real(connection, members)
        return (sql.replace("EXISTS", "EXISTS NOT VALID SQL") if len(members) > 1 else sql), params

    monkeypatch.setattr(probing, "_select", broken)
    querysets = [(Item.objects.filter(position=n % 3), [a.pk]) for n in range(6)]
    with CaptureQueriesContext(connection) as queries, caplog.at_level("DEBUG", "reactive_celery"):
        assert probe(querysets) == {1, 4}
    assert sum("_reactive_probe" in q["sql"] for q in queries.captured_queries) == 2
    assert [r.message.split(" (")[0] for r in caplog.records] == ["Grouped probe failed"]
