#!/usr/bin/env python
"""Run the whole demo with one command: ``python run.py`` (Ctrl-C stops it all).

1. Starts one private ``redis-server`` (unless ``REDIS_URL`` is set) and
   exports ``REDIS_URL``, so every process below shares it.
2. Migrates the SQLite database and loads the demo accounts and sample tasks.
3. Starts the processes of ``Procfile`` with honcho: the ASGI server (uvicorn),
   one Celery worker and ``celery beat``; ``--changes RATE`` adds ``make_changes``.
4. On Ctrl-C or SIGTERM, honcho stops them (SIGTERM to each process group,
   then SIGKILL after 5 s), and Redis is stopped last, when this process exits.
"""

from __future__ import annotations

import argparse
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
    try:
        from honcho.environ import parse_procfile
        from honcho.manager import Manager
    except ImportError:
        print("run.py needs honcho: pip install -e '.[demo]' (or pip install honcho)")
        return 1
    # Until honcho takes over the signals, turn SIGTERM into a normal exit so
    # that atexit stops Redis and subprocess.run kills a running child.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
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
