"""The README's demo command itself: ``python example_project/run.py``.

Started as a user would start it (its own process group, a private Redis, a
fresh SQLite file), it must serve the page, push changes and polls over a
WebSocket, and leave no process behind when stopped by Ctrl-C or SIGTERM.
The test records run.py's process tree from ``/proc`` while it runs; after
the stop none of those processes, nothing in their process groups or
sessions, and nothing carrying a marker from their environment may be left.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port

from .conftest import EXAMPLE, missing_module, require

pytestmark = [pytest.mark.e2e]

MARKER = "REACTIVE_DEMO_TEST_MARKER"


def processes() -> dict[int, dict]:
    """Every live process: pid -> ppid, process group, session, start time, command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # exited meanwhile, or not ours to read
            continue
        # Fields after the command name, which may itself hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":  # a zombie has exited; only its parent's wait() is missing
            continue
        found[int(entry.name)] = {
            "ppid": int(fields[1]),
            "pgid": int(fields[2]),
            "sid": int(fields[3]),
            "start": int(fields[19]),
            "cmd": cmdline.strip(),
            "environ": environ,
        }
    return found


def descendants(root: int) -> dict[int, dict]:
    """``root`` and every process below it, by parent pid."""
    table = processes()
    tree = {root: table[root]} if root in table else {}
    grew = True
    while grew:
        grew = False
        for pid, info in table.items():
            if pid not in tree and info["ppid"] in tree:
                tree[pid] = info
                grew = True
    return tree


def left_over(seen: dict[int, dict], token: str) -> dict[int, str]:
    """Live processes that run.py started: seen in its tree (same pid and start time), in a
    process group or session of one of those, or carrying the marker in their environment.

    The marker alone is not enough: redis-server and Celery rewrite their process titles
    over the environment block that /proc shows.
    """
    groups = {info["pgid"] for info in seen.values()} | {info["sid"] for info in seen.values()}
    groups.discard(os.getpgid(0))
    groups.discard(os.getsid(0))
    needle = f"{MARKER}={token}".encode()
    return {
        pid: info["cmd"]
        for pid, info in processes().items()
        if (pid in seen and seen[pid]["start"] == info["start"])
        or info["pgid"] in groups
        or info["sid"] in groups
        or needle in info["environ"]
    }


def wait_for_page(
    url: str, demo: subprocess.Popen, log: Path, seen: dict[int, dict], timeout: float = 90
) -> str:
    """The page's HTML once it answers; meanwhile ``seen`` collects run.py's processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.update(descendants(demo.pid))
        if demo.poll() is not None:
            pytest.fail(f"run.py exited with {demo.returncode}:\n{log.read_text()[-4000:]}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response.text
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout} s:\n{log.read_text()[-4000:]}")


def next_diff(socket, observer: str, timeout: float = 20) -> dict:
    """The next ``diff`` frame for ``observer``; frames of other observers are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if frame.get("type") == "diff" and frame.get("observer") == observer:
            return frame
        assert frame.get("type") != "error", frame


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param("ctrl-c", id="ctrl-c"),  # SIGINT to the whole foreground process group
        pytest.param("sigterm", id="sigterm"),  # SIGTERM to run.py alone, as a service manager
    ],
)
def test_demo_command_serves_pushes_and_stops_everything(tmp_path, stop):
    require(missing_module("honcho", "demo") or missing_module("websockets", "demo"))
    from websockets.sync.client import connect

    token = secrets.token_hex(8)
    seen: dict[int, dict] = {}
    port = free_port()
    # The test run's own Redis and settings stay out: run.py starts and stops its own.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE", "PYTHONPATH")
    }
    env[MARKER] = token
    log = tmp_path / "run.log"
    command = [
        sys.executable,
        str(EXAMPLE / "run.py"),
        "--port",
        str(port),
        "--database",
        str(tmp_path / "db.sqlite3"),
    ]
    with open(log, "wb") as out:
        demo = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        assert "Task board" in wait_for_page(f"{url}/", demo, log, seen)
        seen.update(descendants(demo.pid))
        commands = " | ".join(info["cmd"] for info in seen.values())
        for expected in ("redis-server", "uvicorn board.asgi", "board worker", "board beat"):
            assert expected in commands, f"{expected} not among run.py's processes: {commands}"

        with connect(
            f"ws://127.0.0.1:{port}/ws/reactive/",
            additional_headers={"Origin": url},
            open_timeout=10,
        ) as socket:
            socket.send(json.dumps({"type": "subscribe", "id": 1, "url": "/api/tasks/?done=false"}))
            tasks = json.loads(socket.recv(timeout=20))
            assert tasks["type"] == "subscribed" and tasks["items"], tasks
            socket.send(json.dumps({"type": "subscribe", "id": 2, "url": "/api/status/"}))
            status = json.loads(socket.recv(timeout=20))
            assert status["type"] == "subscribed", status

            # A change through the API: signal -> worker -> push.
            title = f"Pushed by the demo test {token}"
            response = httpx.post(f"{url}/api/tasks/", json={"title": title}, timeout=10)
            assert response.status_code == 201, response.text
            diff = next_diff(socket, tasks["observer"])
            assert [entry["item"]["title"] for entry in diff["added"]] == [title]
            # A poll: beat -> worker -> push, with nothing written at all.
            diff = next_diff(socket, status["observer"])
            assert "server time" in [entry["item"]["name"] for entry in diff["changed"]]
        seen.update(descendants(demo.pid))  # the worker's pool processes are up by now

        if stop == "ctrl-c":
            os.killpg(demo.pid, signal.SIGINT)
        else:
            demo.send_signal(signal.SIGTERM)
        returncode = demo.wait(timeout=60)
        output = log.read_text()
        assert returncode == (130 if stop == "ctrl-c" else 143), output[-4000:]
        left = left_over(seen, token)
        assert not left, f"run.py left processes running: {left}\n{output[-4000:]}"
    finally:
        if demo.poll() is None:  # the test failed before the stop: clean up after it
            seen.update(descendants(demo.pid))
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
        for pid in left_over(seen, token):  # only what this test's run.py started
            os.kill(pid, signal.SIGKILL)
