"""The process-wide Redis client: built lazily, reset on setting_changed; Redis's clock.

Also the URL forms of Sentinel and Cluster, and a Sentinel failover the client follows.
"""

import re

import pytest
import redis
from django.test import override_settings

from reactive_celery.exceptions import ConfigurationError
from reactive_celery.store import connection


def test_the_client_is_shared_and_talks_to_the_configured_database(store_redis):
    assert connection.client() is connection.client()
    connection.client().set("rc:probe", "1")
    assert store_redis.get("rc:probe") == "1"


@pytest.mark.single_server
def test_changing_the_redis_setting_drops_the_client(settings, store_redis):
    before = connection.client()
    url = settings.REACTIVE_CELERY["REDIS_URL"]
    with override_settings(
        REACTIVE_CELERY={**settings.REACTIVE_CELERY, "REDIS_URL": url[:-1] + "4"}
    ):
        other = connection.client()
        assert other is not before
        assert other.connection_pool.connection_kwargs["db"] == 4
    after = connection.client()
    assert after is not other and after.connection_pool.connection_kwargs["db"] == 0


def test_an_unrelated_setting_keeps_the_client():
    before = connection.client()
    with override_settings(USE_I18N=False):
        assert connection.client() is before


def test_the_fallback_redis_url_setting_resets_it_too(settings):
    before = connection.client()
    reactive = {k: v for k, v in settings.REACTIVE_CELERY.items() if k != "REDIS_URL"}
    with override_settings(
        REACTIVE_CELERY=reactive, REDIS_URL=settings.REDIS_URL.rstrip("/") + "/5"
    ):
        assert connection.client().connection_pool.connection_kwargs["db"] == 5
    assert connection.client() is not before


def test_no_redis_url_is_a_configuration_error_naming_both_settings(settings):
    reactive = {k: v for k, v in settings.REACTIVE_CELERY.items() if k != "REDIS_URL"}
    with (
        override_settings(REACTIVE_CELERY=reactive, REDIS_URL=None),
        pytest.raises(ConfigurationError, match=r"REACTIVE_CELERY\['REDIS_URL'\] or REDIS_URL"),
    ):
        connection.client()


def test_now_ms_is_redis_clock_in_milliseconds(store_redis):
    seconds, micros = store_redis.time()
    before = seconds * 1000 + micros // 1000
    now = connection.now_ms()
    seconds, micros = store_redis.time()
    assert before <= now <= seconds * 1000 + micros // 1000


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:6379/3", connection.Topology("single", "redis://h:6379/3")),
        (
            "redis+sentinel://:pw@s1:26379,s2:26380/mymaster/3",
            connection.Topology(
                "sentinel",
                "redis+sentinel://:pw@s1:26379,s2:26380/mymaster/3",
                (("s1", 26379), ("s2", 26380)),
                master="mymaster",
                db=3,
                password="pw",
            ),
        ),
        (
            "redis+sentinel://s1:26379/mymaster",
            connection.Topology(
                "sentinel", "redis+sentinel://s1:26379/mymaster", (("s1", 26379),), "mymaster"
            ),
        ),
        (
            "redis+cluster://a:7000,b:7001/",
            connection.Topology(
                "cluster", "redis+cluster://a:7000,b:7001/", (("a", 7000), ("b", 7001))
            ),
        ),
    ],
)
def test_parse_url_names_the_topology(url, expected):
    assert connection.parse_url(url) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h:6379/0", "has no redis://"),
        ("redis+sentinel://s1:26379/", "<master name>/<db>"),
        ("redis+sentinel://s1:26379/m/x", "<master name>/<db>"),
        ("redis+sentinel://s1/m/0", "'s1' is not host:port"),
        ("redis+cluster://a:7000/2", "database 0 only"),
    ],
)
def test_a_malformed_url_is_a_configuration_error_saying_what_is_wrong(url, problem):
    with pytest.raises(ConfigurationError, match=re.escape(problem)):
        connection.parse_url(url)


def test_the_password_stays_out_of_the_error():
    with pytest.raises(ConfigurationError) as caught:
        connection.parse_url("redis+sentinel://:secret@s1:26379/")
    assert "secret" not in str(caught.value) and "***" in str(caught.value)


def test_a_sentinel_url_follows_the_master_across_a_failover(settings, sentinel_group):
    with override_settings(
        REACTIVE_CELERY={**settings.REACTIVE_CELERY, "REDIS_URL": sentinel_group.url(4)}
    ):
        connection.client().set("rc:probe", "before")
        with redis.Redis(port=sentinel_group.master_port, db=4, decode_responses=True) as master:
            assert master.get("rc:probe") == "before"
        sentinel_group.kill_master()
        sentinel_group.wait_for_failover()
        assert connection.client().get("rc:probe") == "before"  # replicated, then promoted
        connection.client().set("rc:probe", "after")
        with redis.Redis(port=sentinel_group.replica_port, db=4, decode_responses=True) as now:
            assert now.get("rc:probe") == "after"
        connection.client().close()
