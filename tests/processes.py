"""Starting and stopping the real processes of a test run: Celery workers, ASGI servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A child process with its output in a log file, shown when a test fails."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = args
        self.extra_env = env or {}  # e.g. REACTIVE_TEST_* settings of a dedicated process
        self.log = Path(tempfile.mkstemp(prefix=f"reactive-{name}-", suffix=".log")[1])
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "REACTIVE_TEST_PROCESS": self.name,
            **self.extra_env,
        }
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not print {text!r}:\n{self.output()[-4000:]}")

    def wait_for_port(self, port: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                if self.popen.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} is not listening on {port}:\n{self.output()[-4000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def celery_worker(
    name: str, concurrency: int = 2, env: dict[str, str] | None = None, queue: str | None = None
) -> Process:
    process = Process(
        f"worker-{name}",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.project",
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            *(["-Q", queue] if queue else []),
        ],
        env,
    ).start()
    process.wait_for_output(" ready.", timeout=60)
    return process


def celery_beat(
    name: str, schedule: Path | None = None, env: dict[str, str] | None = None
) -> Process:
    """A ``celery beat``; pass the ``schedule`` file of an earlier one to restart it."""
    # Beat keeps its last-run times in a shelve file that must be writable.
    schedule = schedule or Path(tempfile.mkdtemp(prefix=f"reactive-beat-{name}-")) / "schedule"
    process = Process(
        f"beat-{name}",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.project",
            "beat",
            "--loglevel=INFO",
            "-s",
            str(schedule),
        ],
        env,
    ).start()
    process.schedule = schedule  # type: ignore[attr-defined]
    process.wait_for_output("beat: Starting...", timeout=60)
    return process


def asgi_server(port: int, env: dict[str, str] | None = None) -> Process:
    process = Process(
        f"asgi-{port}",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.project.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--ws",
            "websockets",
            # A little above MAX_FRAME_BYTES: larger frames are cut off unbuffered (1009).
            "--ws-max-size",
            "262144",
            # uvicorn's default (on), as browsers negotiate it; the benchmarks measure
            # both (docs/deployment.md).
            "--ws-per-message-deflate",
            os.environ.get("REACTIVE_TEST_WS_DEFLATE", "true"),
            "--log-level",
            "warning",
        ],
        env,
    ).start()
    process.wait_for_port(port)
    return process


def reactive_listener(name: str, env: dict[str, str] | None = None) -> Process:
    """``manage.py reactive_listen``; returns once it has caught up and listens."""
    process = Process(
        f"listen-{name}",
        [
            sys.executable,
            "-m",
            "django",
            "reactive_listen",
            "--settings",
            "tests.project.settings",
        ],
        env,
    ).start()
    process.wait_for_output("Listening on", timeout=60)
    return process
