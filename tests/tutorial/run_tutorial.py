"""Follow docs/tutorial.md literally, in a temporary directory: ``nox -s tutorial``.

The code blocks are taken from the markdown itself, in order, so the tutorial
and this check cannot drift apart:

- ```` ```sh ```` blocks run in bash and must succeed;
- ```` ```sh terminal=NAME ```` blocks are the long-running processes (Redis,
  the Celery worker, uvicorn, watch.py): started in the background, each
  waited for until it is ready, all stopped at the end;
- ```` ```LANG file=PATH ```` blocks are written to PATH (``append``: added to it).

Three substitutions keep it runnable anywhere, and nothing else is changed:
the ports 6379 and 8000 become free ones (CI's machine runs a Redis of its own
on 6379), and ``pip install reactive-celery`` installs this checkout.

It passes when watch.py, subscribed over a real WebSocket, prints the task the
tutorial's last command saves. Without redis-server on PATH it skips, or
fails when REACTIVE_REQUIRE_ALL=1.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.M | re.S)
#: How each terminal shows it is ready, and how long it may take.
READY_TIMEOUT = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def blocks(text: str) -> list[tuple[str, dict[str, str], str]]:
    """(language, attributes, body) of every fenced block, in order."""
    found = []
    for lang, info, body in BLOCK.findall(text):
        attrs = {}
        for word in info.split():
            key, _, value = word.partition("=")
            attrs[key] = value
        found.append((lang, attrs, body))
    return found


class Tutorial:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis_port, self.web_port = free_port(), free_port()
        self.terminals: dict[str, tuple[subprocess.Popen, Path]] = {}
        venv_bin = workdir / ".venv" / "bin"
        # What `. .venv/bin/activate` does, for every block: each runs in a shell of its own.
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV")
        }
        self.env.update(
            VIRTUAL_ENV=str(workdir / ".venv"),
            PATH=f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
            PYTHONUNBUFFERED="1",
        )

    def substitute(self, text: str) -> str:
        text = text.replace("6379", str(self.redis_port)).replace("8000", str(self.web_port))
        return re.sub(r"(pip install .*?)\breactive-celery\b", rf"\1{ROOT}", text)

    def run(self, lang: str, attrs: dict[str, str], body: str) -> None:
        body = self.substitute(body)
        if "file" in attrs:
            path = self.workdir / attrs["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            if "append" in attrs:
                with path.open("a") as out:
                    out.write("\n\n" + body)
            else:
                path.write_text(body)
            print(f"--- wrote {attrs['file']}{' (appended)' if 'append' in attrs else ''}")
        elif lang == "sh" and "terminal" in attrs:
            self.start(attrs["terminal"], body)
        elif lang == "sh":
            print(f"--- $ {body.strip()}", flush=True)
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", body],
                cwd=self.workdir,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            print(done.stdout, flush=True)
            done.check_returncode()
            # A reader who sees a traceback stops there, even when the command succeeded.
            if "Traceback (most recent call last)" in done.stdout:
                raise SystemExit(f"the tutorial's command printed a traceback: {body.strip()}")

    def start(self, name: str, body: str) -> None:
        print(f"--- terminal {name}: {body.strip()}", flush=True)
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {body.strip()}"],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stopped as a group, like a terminal's job
            )
        self.terminals[name] = (process, log)
        ready = {
            "redis": lambda: self.redis_answers(),
            "worker": lambda: " ready." in log.read_text(errors="replace"),
            "web": lambda: self.http_ok("/"),
            "watch": lambda: "subscribed:" in log.read_text(errors="replace"),
        }[name]
        self.wait(f"{name} to be ready", ready, process)

    def wait(self, what: str, condition, process: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if condition():
                return
            if process is not None and process.poll() is not None:
                raise SystemExit(f"waiting for {what}: it exited with {process.returncode}")
            time.sleep(0.2)
        raise SystemExit(f"waited {READY_TIMEOUT} s for {what}")

    def redis_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def http_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        for process, _ in self.terminals.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in self.terminals.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)

    def logs(self) -> str:
        return "\n".join(
            f"===== {name}.log\n{log.read_text(errors='replace')[-3000:]}"
            for name, (_, log) in self.terminals.items()
        )


def main() -> int:
    if shutil.which("redis-server") is None:
        message = "the tutorial needs redis-server on PATH (apt-get install redis-server)"
        if os.environ.get("REACTIVE_REQUIRE_ALL") == "1":
            print(f"FAILED: {message} (REACTIVE_REQUIRE_ALL=1: required here)", file=sys.stderr)
            return 1
        print(f"SKIPPED: {message}")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="reactive-tutorial-"))
    tutorial = Tutorial(workdir)
    steps = blocks(TUTORIAL.read_text())
    try:
        for step in steps:
            tutorial.run(*step)
        # The page and the client it imports are served, as step 4 promises.
        with urllib.request.urlopen(f"http://127.0.0.1:{tutorial.web_port}/", timeout=5) as r:
            page = r.read().decode()
        assert "/static/reactive_celery/reactive.js" in page, page
        assert tutorial.http_ok("/static/reactive_celery/reactive.js")
        # The last command saved a task: the push must reach watch.py.
        title = re.findall(r"Task\.objects\.create\(title='([^']+)'\)", TUTORIAL.read_text())[-1]
        watch_log = tutorial.terminals["watch"][1]
        tutorial.wait(
            f"watch.py to print 'added: {title}'",
            lambda: f"added: {title}" in watch_log.read_text(errors="replace"),
        )
        print(f"--- pushed: watch.py printed 'added: {title}'")
    except BaseException:
        print(tutorial.logs(), file=sys.stderr)
        raise
    finally:
        tutorial.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"tutorial OK: {len(steps)} blocks followed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
