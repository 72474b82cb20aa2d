"""System checks name the misconfiguration and the fix."""

import ast
import logging

import pytest
from channels_redis.utils import create_pool, decode_hosts
from django.conf import settings
from django.core.management import call_command
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.db.models.signals import pre_migrate
from django.test import override_settings
from django.urls import include, path
from rest_framework import viewsets
from rest_framework.test import APIRequestFactory

from reactive_celery import checks, decorators, reactive, signals
from reactive_celery.exceptions import ConfigurationError
from tests.testapp.models import Item
from tests.testapp.views import ItemViewSet

REDIS_LAYER = {
    "BACKEND": "channels_redis.core.RedisChannelLayer",
    "CONFIG": {"hosts": [{"address": "redis://x/2", "socket_timeout": None}]},
}


def ids(errors):
    return [e.id for e in errors]


def test_test_project_passes_every_check():
    assert checks.check_settings() == []
    assert checks.check_channel_layer() == []
    assert checks.check_celery() == []
    assert checks.check_dependencies() == []


def test_missing_channel_layer_is_e001():
    with override_settings(CHANNEL_LAYERS={}):
        assert ids(checks.check_channel_layer()) == ["reactive_celery.E001"]


def test_in_memory_layer_is_e002():
    layer = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layer):
        assert ids(checks.check_channel_layer()) == ["reactive_celery.E002"]


def test_the_pubsub_layer_is_e011():
    layer = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://x/2", "socket_timeout": None}]},
        }
    }
    with override_settings(CHANNEL_LAYERS=layer):
        errors = checks.check_channel_layer()
    assert ids(errors) == ["reactive_celery.E011"]
    assert "RedisChannelLayer" in errors[0].hint


def test_missing_redis_is_e004():
    with override_settings(REACTIVE_CELERY={}, REDIS_URL=None):
        errors = checks.check_settings()
    assert ids(errors) == ["reactive_celery.E004"]
    assert "REDIS_URL" in errors[0].hint


def test_invalid_settings_are_e005():
    with override_settings(REACTIVE_CELERY={"NOPE": 1}):
        assert ids(checks.check_settings()) == ["reactive_celery.E005"]


def test_every_settings_problem_is_its_own_e005():
    bad = {"KEY_PREFX": "x", "NOPE": 1, "SUBSCRIBER_TTL": 0, "FRAME_RATE": "fast"}
    with override_settings(REACTIVE_CELERY=bad, REDIS_URL=None):
        errors = checks.check_settings()
    assert ids(errors) == ["reactive_celery.E005"] * 4 + ["reactive_celery.E004"]
    messages = [e.msg for e in errors]
    assert "did you mean 'KEY_PREFIX'" in messages[0]
    assert "'NOPE'" in messages[1]
    assert any("SUBSCRIBER_TTL" in m for m in messages[2:4])
    assert any("FRAME_RATE" in m for m in messages[2:4])


@pytest.mark.parametrize(
    ("settings", "name", "fixed"),
    [
        (
            {"REACTIVE_CELERY": {"REDIS_URL": "127.0.0.1:6379/0"}},
            "REACTIVE_CELERY['REDIS_URL']",
            "redis://127.0.0.1:6379/0",
        ),
        (
            {"REACTIVE_CELERY": {}, "REDIS_URL": "localhost:6379/0"},
            "REDIS_URL",
            "redis://localhost:6379/0",
        ),
        (
            {"REACTIVE_CELERY": {"REDIS_URL": "http://cache:6379/0"}},
            "REACTIVE_CELERY['REDIS_URL']",
            "redis://cache:6379/0",
        ),
    ],
)
def test_redis_url_without_scheme_is_e007(settings, name, fixed):
    with override_settings(**settings):
        errors = checks.check_settings()
    assert ids(errors) == ["reactive_celery.E007"]
    assert name in errors[0].msg
    assert errors[0].hint == f"Set {name} = {fixed!r}."


def test_e007_masks_the_password():
    with override_settings(REACTIVE_CELERY={"REDIS_URL": "user:secret@cache:6379/0"}):
        (error,) = checks.check_settings()
    assert "secret" not in error.msg + error.hint
    assert "'redis://user:***@cache:6379/0'" in error.hint


def test_redis_urls_with_a_scheme_pass():
    for url in ("redis://h:1/0", "rediss://h:1/0", "unix:///run/redis.sock?db=0"):
        with override_settings(REACTIVE_CELERY={"REDIS_URL": url}):
            assert checks.check_settings() == []


BACKENDS = ["channels_redis.core.RedisChannelLayer"]

#: Every host form channels_redis's decode_hosts accepts, each connecting with a timeout.
TIMED_OUT_HOSTS = [
    ("127.0.0.1", 6379),  # Channels' tutorial form
    ["127.0.0.1", 6379],
    "redis://x/2",
    {"address": "redis://x/2"},
    {"address": "redis://x/2", "socket_timeout": 10},
    {"address": "redis://x/2?socket_timeout=5", "socket_timeout": None},
    {"host": "x", "port": 6379},
    {"sentinels": [("s", 26379)], "master_name": "mymaster"},
]

UNTIMED_HOSTS = [
    {"address": "redis://x/2", "socket_timeout": None},
    {"address": "unix:///run/redis.sock?db=2", "socket_timeout": None},
    {"host": "x", "port": 6379, "socket_timeout": None},
    {"sentinels": [("s", 26379)], "master_name": "mymaster", "socket_timeout": None},
]


def layer_with(hosts, backend=BACKENDS[0]):
    return {"default": {"BACKEND": backend, "CONFIG": {"hosts": hosts}}}


def socket_timeout(host):
    """The socket timeout channels_redis's own pool gives connections to ``host``."""
    pool = create_pool(decode_hosts([host])[0])
    return pool.connection_kwargs.get("socket_timeout", 5)  # redis-py's default


def fix_in(hint):
    return ast.literal_eval(hint.removeprefix("Write this host as ").removesuffix("."))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("host", TIMED_OUT_HOSTS, ids=repr)
def test_every_host_form_that_keeps_a_socket_timeout_is_e006_with_the_exact_fix(host, backend):
    assert socket_timeout(host) is not None  # the check agrees with channels_redis
    with override_settings(CHANNEL_LAYERS=layer_with([host], backend)):
        (error,) = checks.check_channel_layer()
    assert error.id == "reactive_celery.E006"
    assert "CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]" in error.msg
    fixed = fix_in(error.hint)
    assert socket_timeout(fixed) is None
    with override_settings(CHANNEL_LAYERS=layer_with([fixed], backend)):
        assert checks.check_channel_layer() == []


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("host", UNTIMED_HOSTS, ids=repr)
def test_hosts_without_a_socket_timeout_pass(host, backend):
    assert socket_timeout(host) is None
    with override_settings(CHANNEL_LAYERS=layer_with([host], backend)):
        assert checks.check_channel_layer() == []


def test_e006_names_each_offending_host():
    hosts = [UNTIMED_HOSTS[0], ("10.0.0.1", 6380), TIMED_OUT_HOSTS[-1]]
    with override_settings(CHANNEL_LAYERS=layer_with(hosts)):
        errors = checks.check_channel_layer()
    assert ids(errors) == ["reactive_celery.E006"] * 2
    assert "hosts'][1] (('10.0.0.1', 6380))" in errors[0].msg
    assert fix_in(errors[0].hint) == {"host": "10.0.0.1", "port": 6380, "socket_timeout": None}
    assert "hosts'][2] (sentinel master 'mymaster')" in errors[1].msg


def test_e006_masks_passwords():
    hosts = ["redis://:secret@x/2", {"host": "x", "password": "secret"}]
    with override_settings(CHANNEL_LAYERS=layer_with(hosts)):
        errors = checks.check_channel_layer()
    assert len(errors) == 2
    assert all("secret" not in e.msg + e.hint for e in errors)


def test_missing_or_string_hosts_are_e006():
    with override_settings(CHANNEL_LAYERS=layer_with(None)):
        (error,) = checks.check_channel_layer()
    assert error.id == "reactive_celery.E006"
    assert "redis://localhost:6379" in error.hint
    with override_settings(CHANNEL_LAYERS=layer_with("redis://x/2")):
        (error,) = checks.check_channel_layer()
    assert error.id == "reactive_celery.E006"
    assert "not a list" in error.msg
    assert "[{'address': 'redis://x/2', 'socket_timeout': None}]" in error.hint


def test_other_layer_kinds_without_hosts_are_not_judged():
    layers = {"default": {"BACKEND": "myproject.layers.SQSLayer", "CONFIG": {"queue": "q"}}}
    with override_settings(CHANNEL_LAYERS=layers):
        assert checks.check_channel_layer() == []


def test_no_celery_app_is_e003(monkeypatch):
    from celery import _state

    # Pure logic of the check: pretend this process created no Celery app.
    monkeypatch.setattr(_state, "_get_active_apps", lambda: [])
    errors = checks.check_celery()
    assert ids(errors) == ["reactive_celery.E003"]
    assert "celery.py" in errors[0].hint


def test_short_visibility_timeout_is_w001():
    from tests.project.celery_app import app

    saved = app.conf.broker_transport_options
    try:
        app.conf.broker_transport_options = {"visibility_timeout": 5}
        warnings = checks.check_celery()
        assert ids(warnings) == ["reactive_celery.W001"]
        assert "visibility_timeout" in warnings[0].hint
        app.conf.broker_transport_options = {"visibility_timeout": 3600}
        assert checks.check_celery() == []
    finally:
        app.conf.broker_transport_options = saved


def test_missing_broker_url_is_e008(monkeypatch):
    from tests.project.celery_app import app

    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    saved = app.conf.broker_url
    try:
        app.conf.broker_url = None
        errors = checks.check_celery()
    finally:
        app.conf.broker_url = saved
    assert ids(errors) == ["reactive_celery.E008"]
    assert "'tests'" in errors[0].msg
    assert "CELERY_BROKER_URL" in errors[0].hint


class UnknownDependencyViewSet(viewsets.GenericViewSet):
    @reactive(dependencies=["testapp.Nope"])
    def list(self, request):
        return None


class BadDependencyViewSet(viewsets.GenericViewSet):
    @reactive(dependencies=[42])
    def list(self, request):
        return None


#: The URLconf of the dependency check tests: one view at the top, one nested.
urlpatterns = [
    path("unknown/", UnknownDependencyViewSet.as_view({"get": "list"})),
    path("also/", UnknownDependencyViewSet.as_view({"get": "list"})),
    path("nested/", include([path("bad/", BadDependencyViewSet.as_view({"get": "list"}))])),
]


@override_settings(ROOT_URLCONF=__name__)
def test_unknown_dependencies_of_routed_views_are_e009():
    errors = checks.check_dependencies()
    assert ids(errors) == ["reactive_celery.E009"] * 2  # one per method, however often routed
    assert errors[0].msg.startswith(f"{__name__}.UnknownDependencyViewSet.list: ")
    assert "'testapp.Nope'" in errors[0].msg
    assert errors[1].msg.startswith(f"{__name__}.BadDependencyViewSet.list: ")
    assert "'app_label.Model'" in errors[0].hint


# A check cannot see its own app left out of INSTALLED_APPS (the app registers
# the checks), nor a migrate run: these guards live in decorators and signals.


@pytest.mark.django_db
def test_observing_without_the_app_installed_is_a_configuration_error():
    without = [app for app in settings.INSTALLED_APPS if app != "reactive_celery"]
    view = ItemViewSet.as_view({"get": "list"})
    with override_settings(INSTALLED_APPS=without):
        with pytest.raises(ConfigurationError, match="add 'reactive_celery' to INSTALLED_APPS"):
            view(APIRequestFactory().get("/api/items/", {"observe": "s1"}))
        # Without ?observe= the view answers exactly as before.
        assert view(APIRequestFactory().get("/api/items/")).status_code == 200
    assert decorators._app_installed() is True  # the answer was forgotten with the setting


def pending_tables(callbacks):
    return [set(c.tables) for c in callbacks if isinstance(c, signals._PendingTables)]


@pytest.mark.django_db
def test_django_migrations_is_never_marked(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        MigrationRecorder(connection).record_applied("testapp", "9999_never_marked")
        signals.notify("django_migrations")
    assert pending_tables(callbacks) == []


@pytest.mark.django_db
def test_migrate_before_redis_is_up_logs_nothing(caplog, django_capture_on_commit_callbacks):
    def data_migration(**kwargs):
        Item.objects.create(name="written while migrate runs")

    down = {**settings.REACTIVE_CELERY, "REDIS_URL": "redis://127.0.0.1:1/0"}
    pre_migrate.connect(data_migration, dispatch_uid="test_checks.data_migration")
    try:
        with (
            override_settings(REACTIVE_CELERY=down),
            caplog.at_level(logging.DEBUG, logger="reactive_celery.signals"),
            django_capture_on_commit_callbacks(execute=True) as callbacks,
        ):
            # Unrecord and record testapp's migrations again: django_migrations is
            # written, as on a first deploy, without touching the schema.
            call_command("migrate", "testapp", "zero", fake=True, verbosity=0)
            call_command("migrate", fake=True, verbosity=0)
    finally:
        pre_migrate.disconnect(dispatch_uid="test_checks.data_migration")
    assert [r for r in caplog.records if r.name == "reactive_celery.signals"] == []
    assert pending_tables(callbacks) == []
    assert not signals._retry.tables and not signals._retry.observers
    assert not signals._migrating.running
    with django_capture_on_commit_callbacks() as callbacks:
        Item.objects.create(name="written after migrate")
    assert pending_tables(callbacks) == [{"testapp_item"}]


@pytest.mark.django_db
def test_flush_alone_does_not_start_or_end_a_migrate():
    # flush (and TransactionTestCase) send post_migrate with no plan and no pre_migrate.
    emit_post_migrate_signal(0, False, "default")
    assert not signals._migrating.running


POSTGRES = {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "CONN_MAX_AGE": 0}


def test_a_server_database_without_db_reuse_is_w002(monkeypatch):
    from tests.project.celery_app import app

    monkeypatch.setattr(settings, "DATABASES", {"default": POSTGRES})
    assert checks.check_celery() == []  # the test project sets CELERY_DB_REUSE_MAX
    monkeypatch.setitem(app.conf, "CELERY_DB_REUSE_MAX", None)
    monkeypatch.setitem(app.conf, "db_reuse_max", None)
    warnings = checks.check_celery()
    assert ids(warnings) == ["reactive_celery.W002"]
    assert "default" in warnings[0].msg and "CELERY_DB_REUSE_MAX" in warnings[0].hint
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    monkeypatch.setattr(settings, "DATABASES", {"default": sqlite})
    assert checks.check_celery() == []  # a file, not a session


def test_persistent_connections_under_asgi_are_w003_unless_pooled(monkeypatch):
    persistent = {**POSTGRES, "CONN_MAX_AGE": 60}
    monkeypatch.setattr(settings, "DATABASES", {"default": persistent, "other": POSTGRES})
    warnings = checks.check_celery()
    assert ids(warnings) == ["reactive_celery.W003"]
    assert "for default under ASGI" in warnings[0].msg and "pool" in warnings[0].hint
    pooled = {**POSTGRES, "OPTIONS": {"pool": {"max_size": 4}}}
    monkeypatch.setattr(settings, "DATABASES", {"default": pooled})
    assert checks.check_celery() == []
    monkeypatch.setattr(settings, "DATABASES", {"default": persistent})
    monkeypatch.delattr(settings, "ASGI_APPLICATION")
    assert checks.check_celery() == []  # WSGI threads are bounded by the server


def test_triggers_off_postgresql_is_e010_and_on_it_passes():
    triggers = {**settings.REACTIVE_CELERY, "CHANGE_SOURCE": "triggers"}
    with override_settings(REACTIVE_CELERY=triggers):
        errors = checks.check_change_source()
    if connection.vendor == "postgresql":
        assert errors == []
    else:
        assert [e.id for e in errors] == ["reactive_celery.E010"]
        assert "default database is sqlite" in errors[0].msg
    assert checks.check_change_source() == []  # signals: fine on any database


@pytest.mark.parametrize(
    "url", ["redis+sentinel://s1:26379,s2:26379/mymaster/0", "redis+cluster://a:7000,b:7001/"]
)
def test_sentinel_and_cluster_urls_pass(url):
    with override_settings(REACTIVE_CELERY={"REDIS_URL": url}):
        assert checks.check_settings() == []


def test_a_malformed_sentinel_url_is_e007_saying_what_is_wrong_without_the_password():
    with override_settings(REACTIVE_CELERY={"REDIS_URL": "redis+sentinel://:secret@s1:26379/"}):
        (error,) = checks.check_settings()
    assert error.id == "reactive_celery.E007"
    assert "REACTIVE_CELERY['REDIS_URL']" in error.msg and "<master name>/<db>" in error.msg
    assert "secret" not in error.msg + error.hint
    assert "redis+sentinel://host:26379,host2:26379/mymaster/0" in error.hint
