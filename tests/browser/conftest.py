"""Browser end-to-end fixtures: the example project's real processes, and Chromium.

The processes are the ones of ``example_project/Procfile`` (uvicorn, a Celery
worker, celery beat), run with a private Redis and a fresh SQLite file, and
driven by Playwright through Debian's Chromium (``/usr/bin/chromium``; no
browser is ever downloaded).

Without Playwright, Chromium or honcho these tests skip, or fail when
``REACTIVE_REQUIRE_ALL=1`` (CI sets it), so CI never passes on a browser
suite that did not run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import processes

ROOT = processes.ROOT
EXAMPLE = ROOT / "example_project"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("REACTIVE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Seconds a pushed change may take to show in a page: generous for a loaded CI machine.
PUSH_TIMEOUT = 15
#: The demo accounts of ``load_sample_tasks``.
PASSWORD = "demo"


def require(problem: str | None) -> None:
    """Skip the test for ``problem``, or fail it when REACTIVE_REQUIRE_ALL=1."""
    if problem is None:
        return
    if os.environ.get("REACTIVE_REQUIRE_ALL") == "1":
        pytest.fail(f"{problem} (REACTIVE_REQUIRE_ALL=1: required here)", pytrace=False)
    pytest.skip(problem)


def missing_module(name: str, extra: str) -> str | None:
    try:
        __import__(name)
    except ImportError:
        return f"{name} is not installed: pip install -e '.[{extra}]'"
    return None


def procfile() -> dict[str, str]:
    """The example project's ``Procfile``: process name -> shell command."""
    commands = {}
    for line in (EXAMPLE / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


class DemoApp:
    """The example project running as real processes, as ``run.py`` runs it."""

    def __init__(self, workdir: Path, redis_url: str) -> None:
        self.port = processes.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "REDIS_URL": redis_url,
            "DJANGO_SETTINGS_MODULE": "board.settings",
            "DEMO_SQLITE_PATH": str(workdir / "db.sqlite3"),
            "BEAT_SCHEDULE": str(workdir / "celerybeat-schedule"),
            "PYTHONPATH": str(EXAMPLE),
            "PYTHON": sys.executable,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
        }
        self.commands = procfile()
        self.running: dict[str, processes.Process] = {}
        self.api = httpx.Client(base_url=self.url, timeout=20)
        self.users: dict[str, int] = {}  # username -> pk of the demo accounts

    def manage(self, *args: str, timeout: float = 120) -> str:
        """Run ``manage.py`` in the example project against this app's database and Redis."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=EXAMPLE,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stderr}"
        return result.stdout

    def start(self, name: str) -> processes.Process:
        """Start one Procfile process (``web``, ``worker``, ``beat``) and wait until it serves."""
        process = processes.Process(f"demo-{name}", ["sh", "-c", self.commands[name]], self.env)
        self.running[name] = process.start()
        if name == "web":
            process.wait_for_port(self.port, timeout=60)
        elif name == "worker":
            process.wait_for_output(" ready.", timeout=60)
        elif name == "beat":
            process.wait_for_output("beat: Starting...", timeout=60)
        return process

    def kill_web(self) -> None:
        """SIGKILL the ASGI server, as a crash would: its sockets drop without a close."""
        self.running["web"].kill(signal.SIGKILL)

    def ensure_web(self) -> None:
        if self.running["web"].popen.poll() is not None:
            self.start("web")

    def logs(self) -> str:
        return "\n".join(
            f"----- {name} ({process.log})\n{process.output()[-6000:]}"
            for name, process in self.running.items()
        )

    def stop(self) -> None:
        self.api.close()
        for process in reversed(list(self.running.values())):
            process.stop()


@pytest.fixture(scope="session")
def demo_app() -> Iterator[DemoApp]:
    """The example project with its own Redis and SQLite file, for the whole session."""
    require(missing_module("honcho", "demo") or missing_module("uvicorn", "demo"))
    from reactive_celery.testing import redis_server

    workdir = Path(tempfile.mkdtemp(prefix="reactive-browser-"))
    redis, redis_url = redis_server.start()
    app = DemoApp(workdir, redis_url)
    try:
        app.manage("migrate", "--noinput", "-v", "0")
        app.manage("load_sample_tasks")
        # The pk of each demo account, read back through the project's own shell.
        script = (
            "import json; from django.contrib.auth.models import User; "
            "print(json.dumps(dict(User.objects.values_list('username', 'pk'))))"
        )
        app.users = json.loads(app.manage("shell", "-c", script).splitlines()[-1])
        for name in ("worker", "beat", "web"):
            app.start(name)
        yield app
    finally:
        app.stop()
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def app(demo_app: DemoApp) -> DemoApp:
    """The running example project; a server an earlier test killed is started again."""
    demo_app.ensure_web()
    return demo_app


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """Debian's Chromium under Playwright, headless."""
    require(missing_module("playwright", "browser"))
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        require(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=PUSH_TIMEOUT * 1000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser, app: DemoApp) -> Iterator:
    """``new_page(user=None)``: a page in a context of its own, logged in as ``user``.

    Uncaught JavaScript errors in any page fail the test.
    """
    contexts = []
    errors: list[str] = []

    def make(user: str | None = None, viewport: dict | None = None):
        context = browser.new_context(
            base_url=app.url, viewport=viewport or {"width": 1100, "height": 700}
        )
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        if user:
            page.goto("/admin/login/?next=/")
            page.fill("#id_username", user)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(f"{app.url}/")
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Attach the example project's process logs to a failed test's report."""
    report = yield
    if report.failed and "demo_app" in getattr(item, "fixturenames", ()):
        app = item.funcargs.get("demo_app") or item.funcargs.get("app")
        if app is not None:
            report.sections.append(("example project processes", app.logs()))
    return report


def artifact(name: str) -> Path:
    """A path under ``tests/artifacts/`` (git-ignored) for a file a test leaves behind."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
