"""The README's demo command itself: ``python example_project/run.py``.

Started as a user would start it (its own process group, a private Redis, a
fresh SQLite file), it must serve the page, push changes and polls over a
WebSocket, and leave no process behind when stopped by Ctrl-C, SIGTERM or its
terminal closing (SIGHUP, through a real pseudo-terminal).
The test records run.py's process tree from ``/proc`` while it runs; after
the stop none of those processes, nothing in their process groups or
sessions, and nothing carrying a marker from their environment may be left.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import secrets
import select
import signal
import socket as sockets
import subprocess
import sys
import termios
import threading
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


class Terminal:
    """A pseudo-terminal that becomes the controlling terminal of the process it starts.

    Its output is copied to ``log`` by a thread. ``hang_up()`` closes the master side,
    as a terminal emulator does when its window closes: the kernel sends SIGHUP to the
    session leader, and every later write to the terminal fails.
    """

    def __init__(self, log: Path) -> None:
        self.master, self.slave = pty.openpty()
        self._log = log
        self._open = True
        self._reader = threading.Thread(target=self._copy, daemon=True)

    def popen(self, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            start_new_session=True,
            # After setsid(): adopt the terminal as a shell's job would have it.
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(self.slave)
        self._reader.start()
        return process

    def _copy(self) -> None:
        with open(self._log, "ab") as out:
            while self._open:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if not ready:
                    continue
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # EIO: every slave fd closed
                    return
                if not data:
                    return
                out.write(data)
                out.flush()

    def hang_up(self) -> None:
        self._open = False
        self._reader.join(5)
        os.close(self.master)


def demo_env(token: str) -> dict[str, str]:
    # The test run's own Redis and settings stay out: run.py starts and stops its own.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE", "PYTHONPATH")
    }
    env[MARKER] = token
    return env


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param("ctrl-c", id="ctrl-c"),  # SIGINT to the whole foreground process group
        pytest.param("sigterm", id="sigterm"),  # SIGTERM to run.py alone, as a service manager
        pytest.param("sighup", id="terminal-closed"),  # the terminal's window is closed
    ],
)
def test_demo_command_serves_pushes_and_stops_everything(tmp_path, stop):
    require(missing_module("honcho", "demo") or missing_module("websockets", "demo"))
    from websockets.sync.client import connect

    token = secrets.token_hex(8)
    seen: dict[int, dict] = {}
    port = free_port()
    env = demo_env(token)
    log = tmp_path / "run.log"
    command = [
        sys.executable,
        str(EXAMPLE / "run.py"),
        "--port",
        str(port),
        "--database",
        str(tmp_path / "db.sqlite3"),
    ]
    terminal = Terminal(log) if stop == "sighup" else None
    if terminal:
        demo = terminal.popen(command, env)
    else:
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
        elif stop == "sigterm":
            demo.send_signal(signal.SIGTERM)
        else:
            terminal.hang_up()
        returncode = demo.wait(timeout=60)
        output = log.read_text(errors="replace")
        expected = {"ctrl-c": 130, "sigterm": 143, "sighup": 129}[stop]
        assert returncode == expected, output[-4000:]
        # Beat polled at least once (the status diff above), but the console stays readable:
        # neither beat's "Sending due task" nor the worker's "received" lines for it show.
        assert "Sending due task reactive_celery.poll" not in output, output[-4000:]
        assert "reactive_celery.poll[" not in output, output[-4000:]
        left = left_over(seen, token)
        assert not left, f"run.py left processes running: {left}\n{output[-4000:]}"
    finally:
        if terminal and terminal._open:
            terminal.hang_up()
        if demo.poll() is None:  # the test failed before the stop: clean up after it
            seen.update(descendants(demo.pid))
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
        for pid in left_over(seen, token):  # only what this test's run.py started
            os.kill(pid, signal.SIGKILL)


def test_demo_command_refuses_a_taken_port_before_starting_anything(tmp_path):
    token = secrets.token_hex(8)
    db = tmp_path / "db.sqlite3"
    with sockets.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        demo = subprocess.run(
            [sys.executable, str(EXAMPLE / "run.py"), "--port", str(port), "--database", str(db)],
            env=demo_env(token),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert demo.returncode == 1, demo
    assert demo.stdout == "", demo.stdout
    assert demo.stderr.splitlines() == [
        f"run.py: port {port} on 127.0.0.1 is already in use (another demo still running?); "
        "stop it or pick another port with --port"
    ]
    assert not left_over({}, token), "run.py started something although the port was taken"
    assert not db.exists(), "run.py migrated a database although the port was taken"
