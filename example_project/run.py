#!/usr/bin/env python
"""Run the whole demo with one command: ``python run.py`` (Ctrl-C stops it all).

1. Starts one private ``redis-server`` (unless ``REDIS_URL`` is set) and
   exports ``REDIS_URL``, so every process below shares it.
2. Migrates the SQLite database and loads the demo accounts and sample tasks.
3. Starts the processes of ``Procfile`` with honcho: the ASGI server (uvicorn),
   one Celery worker and ``celery beat``; ``--changes RATE`` adds ``make_changes``.
4. On Ctrl-C, SIGTERM or SIGHUP (the terminal closed), honcho stops them
   (SIGTERM to each process group, then SIGKILL after 5 s), and Redis is
   stopped last, when this process exits.

A port already in use stops it before anything starts, with a one-line error.
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATABASE = HERE / "db.sqlite3"  # as board/settings.py has it


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to serve on (8000)")
    parser.add_argument(
        "--database",
        default=str(DEFAULT_DATABASE),
        metavar="PATH",
        help="SQLite file, created when missing (example_project/db.sqlite3)",
    )
    parser.add_argument(
        "--changes", type=float, metavar="RATE", help="also run make_changes at RATE changes/s"
    )
    return parser.parse_args(argv)


def port_problem(host: str, port: int) -> str | None:
    """Why the web server could not listen on host:port, or None when it can."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as sock:
            # As uvicorn binds: a port held only by closed connections (TIME_WAIT) is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (
                f"port {port} on {host} is already in use (another demo still running?); "
                f"stop it or pick another port with --port"
            )
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def detach_from_terminal() -> None:
    """After a hangup the terminal is gone and every write to it fails with EIO.

    Output goes to /dev/null from here on, so that honcho can still print its
    shutdown lines and stop every process instead of dying on the first one.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def start_redis() -> str:
    """REDIS_URL, starting a private server first when it is unset."""
    from reactive_celery.testing import redis_server

    # The server is this process's child, in the terminal's process group: with
    # SIGINT blocked it inherits a blocked SIGINT, so Ctrl-C reaches only us and
    # Redis outlives the processes that use it; it is stopped (SIGTERM) at exit.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return redis_server.ensure()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def announce_when_listening(host: str, port: int, env: str) -> None:
    """Print the URL once the server accepts connections (in a thread)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
        except OSError:
            time.sleep(0.2)
            continue
        shown = f"[{host}]" if ":" in host else host
        print(
            f"\n  Demo running at http://{shown}:{port}/  (admin: /admin/, API: /api/tasks/)\n"
            f"  Log in as admin, alice or bob, password demo.\n"
            f"  More changes, from another shell in {HERE}:\n"
            f"    {env} {shlex.quote(sys.executable)} manage.py make_changes "
            f"--rate 5 --duration 30\n"
            f"  Ctrl-C stops everything.\n",
            flush=True,
        )
        return


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Before Redis and the database: a taken port would otherwise make uvicorn exit
    # while the URL printed below pointed at whatever holds the port.
    problem = port_problem(args.host, args.port)
    if problem:
        print(f"run.py: {problem}", file=sys.stderr)
        return 1
    try:
        from honcho.environ import parse_procfile
        from honcho.manager import Manager
    except ImportError:
        print("run.py needs honcho: pip install -e '.[demo]' (or pip install honcho)")
        return 1

    # Until honcho takes over the signals, turn SIGTERM and SIGHUP into a normal exit
    # so that atexit stops Redis and subprocess.run kills a running child.
    def exit_on_signal(signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            detach_from_terminal()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, exit_on_signal)
    signal.signal(signal.SIGHUP, exit_on_signal)
    redis_url = start_redis()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "board.settings",
        "PYTHON": sys.executable,
        "PYTHONUNBUFFERED": "1",
        "HOST": args.host,
        "PORT": str(args.port),
        "DEMO_SQLITE_PATH": str(Path(args.database).resolve()),
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=HERE, env=env, check=True)
    subprocess.run([*manage, "load_sample_tasks"], cwd=HERE, env=env, check=True)

    # Beat keeps its last-run times in a file; a fresh one each run, removed at exit.
    schedule_dir = tempfile.TemporaryDirectory(prefix="reactive-demo-beat-")
    env["BEAT_SCHEDULE"] = str(Path(schedule_dir.name) / "celerybeat-schedule")

    manager = Manager()
    for name, command in parse_procfile((HERE / "Procfile").read_text()).processes.items():
        manager.add_process(name, command, env=env, cwd=str(HERE))
    if args.changes:
        command = shlex.join([*manage, "make_changes", f"--rate={args.changes}", "--duration=0"])
        manager.add_process("changes", command, env=env, cwd=str(HERE))
    # What a manage.py command run by hand needs to reach this demo's Redis and database.
    shared = {"REDIS_URL": redis_url}
    if Path(args.database).resolve() != DEFAULT_DATABASE:
        shared["DEMO_SQLITE_PATH"] = env["DEMO_SQLITE_PATH"]
    shared_env = " ".join(f"{key}={shlex.quote(value)}" for key, value in shared.items())
    threading.Thread(
        target=announce_when_listening, args=(args.host, args.port, shared_env), daemon=True
    ).start()

    # honcho handles SIGINT and SIGTERM only. The processes it starts have sessions of
    # their own, so a closing terminal hangs up this process alone: stop them as SIGTERM would.
    def hang_up(signum: int, frame: object) -> None:
        detach_from_terminal()
        if manager.returncode is None:
            manager.returncode = 128 + signum
        manager.terminate()

    signal.signal(signal.SIGHUP, hang_up)
    try:
        manager.loop()
    finally:
        schedule_dir.cleanup()
    return manager.returncode or 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
