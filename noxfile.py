"""Nox sessions: the test suite (Python x database), lint and types.

    nox                                        # lint, then tests on this Python, both databases
    nox -s tests                               # tests on every listed Python found here
    nox -s "tests-3.11(database='postgres')"   # one cell, as CI calls it
    nox -s lint
    nox -s types                               # mypy --strict over the package
    nox -s js                                  # the browser client's unit tests (node --test)
    nox -s browser                             # the example project in Chromium, and run.py
    nox -s "compat(django='4.2')"              # the suite on SQLite with Django 4.2 LTS
    nox -s bench -- --sockets 200 --rate 10    # the fan-out benchmark
    nox -s package                             # build, check, install and smoke-test wheel and npm
    nox -s tutorial                            # docs/tutorial.md followed literally, end to end
    nox -s bench -- suite --runs 3             # the scenario suite (docs/performance.md)
    nox -s bench -- redis-memory --runs 3      # Redis memory per observer (docs/deployment.md)
    nox -s tests -- -k observe -x              # arguments after -- go to pytest

The postgres cell uses REACTIVE_PG_HOST / REACTIVE_PG_PORT / REACTIVE_PG_USER /
REACTIVE_PG_PASSWORD (default 127.0.0.1:5432, user postgres). When no server
answers there it is skipped, unless REACTIVE_REQUIRE_ALL=1 or REACTIVE_PG_HOST
is set: then it fails, so CI never passes on a suite that did not run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import zipfile
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
DATABASES = ["sqlite", "postgres"]
# Pinned: a new ruff release adds rules, and CI must not turn red by itself.
RUFF = "ruff==0.17.6"
# Pinned like ruff: a new mypy or stub release must not turn CI red by itself.
TYPE_CHECKERS = (
    "mypy==2.4.1",
    "django-stubs==6.1.2",
    "djangorestframework-stubs==3.18.1",
    "celery-types==0.26.0",
    "types-channels==4.3.0.20260518",
)
PG_ENV = ("REACTIVE_PG_HOST", "REACTIVE_PG_PORT", "REACTIVE_PG_USER", "REACTIVE_PG_PASSWORD")

_current = f"{sys.version_info.major}.{sys.version_info.minor}"
DEFAULT_PYTHON = _current if _current in PYTHONS else PYTHONS[-1]

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "types", "js", f"tests-{DEFAULT_PYTHON}", "browser"]
# Pythons not installed here are skipped; CI names its Python and passes
# --error-on-missing-interpreters so a missing one fails there.
nox.options.error_on_missing_interpreters = False


def _postgres_problem() -> str | None:
    """Why the configured PostgreSQL cannot be reached, or None when it answers."""
    host = os.environ.get("REACTIVE_PG_HOST", "127.0.0.1")
    port = int(os.environ.get("REACTIVE_PG_PORT", "5432"))
    if host.startswith("/"):  # a Unix socket directory, as libpq reads HOST
        path = os.path.join(host, f".s.PGSQL.{port}")
        return None if os.path.exists(path) else f"no PostgreSQL socket at {path}"
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        return f"no PostgreSQL answers at {host}:{port} ({exc})"
    return None


@nox.session(python=PYTHONS)
@nox.parametrize("database", DATABASES)
def tests(session: nox.Session, database: str) -> None:
    """Run the pytest suite on one Python against one database."""
    env = {"REACTIVE_DATABASE": database}
    if database == "postgres":
        problem = _postgres_problem()
        if problem:
            required = os.environ.get("REACTIVE_REQUIRE_ALL") == "1"
            if required or "REACTIVE_PG_HOST" in os.environ:
                session.error(
                    f"{problem}. Start one and set {', '.join(PG_ENV)} "
                    "(REACTIVE_REQUIRE_ALL=1 or REACTIVE_PG_HOST makes this cell mandatory)."
                )
            session.skip(f"{problem}; set REACTIVE_PG_HOST/PORT/USER to run this cell.")
    session.install("-e", ".[test]")
    # tests/browser needs the demo and browser extras and runs in its own session.
    session.run("python", "-m", "pytest", "--ignore=tests/browser", *session.posargs, env=env)


@nox.session(python=DEFAULT_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff's lint rules and formatting (pyproject.toml [tool.ruff]); changes nothing."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=DEFAULT_PYTHON)
def types(session: nox.Session) -> None:
    """mypy in strict mode over the package (setup.cfg [mypy]), with the libraries' stubs."""
    session.install("-e", ".[test]", *TYPE_CHECKERS)
    # The Django plugin imports the test settings, which start a Redis unless REDIS_URL
    # names one; mypy leaves by os._exit, past the atexit that would stop it. Nothing
    # connects to this address.
    session.run("mypy", *session.posargs, env={"REDIS_URL": "redis://127.0.0.1:9/0"})


@nox.session(python=False)
def js(session: nox.Session) -> None:
    """The JS client's unit tests with Node's built-in runner (Node 20+)."""
    session.run("node", "--test", "tests/js/", external=True)


@nox.session(python=DEFAULT_PYTHON)
@nox.parametrize("django", ["4.2"])
def compat(session: nox.Session, django: str) -> None:
    """The suite on SQLite with an older supported Django (the tests cell takes the newest)."""
    major = int(django.split(".")[0])
    session.install("-e", ".[test]", f"Django>={django},<{major + 1}.0")
    session.run(
        "python",
        "-m",
        "pytest",
        "--ignore=tests/browser",
        *session.posargs,
        env={"REACTIVE_DATABASE": "sqlite"},
    )


@nox.session(python=DEFAULT_PYTHON)
def browser(session: nox.Session) -> None:
    """The example project in Debian's Chromium through Playwright, and the demo command.

    Uses /usr/bin/chromium (apt-get install chromium; REACTIVE_CHROMIUM names
    another); no browser is downloaded. Without it, or without Playwright, the
    tests skip, or fail when REACTIVE_REQUIRE_ALL=1. The live page's screenshot
    is left in tests/artifacts/.
    """
    session.install("-e", ".[test,demo,browser]")
    session.run("python", "-m", "pytest", "tests/browser", *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def bench(session: nox.Session) -> None:
    """Fan-out benchmark: one observer, many sockets; prints delivery and latency figures.

    ``nox -s bench -- dcrf --sockets 50 200 --rate 10 50`` runs the comparison
    with djangochannelsrestframework (tests/benchmarks/compare_dcrf.py) instead;
    ``nox -s bench -- suite --database postgres --runs 3 --compare main`` the
    scenario suite (tests/benchmarks/suite.py, docs/performance.md);
    ``nox -s bench -- redis-memory --runs 3`` Redis bytes per observer and per
    subscriber (tests/benchmarks/redis_memory.py, docs/deployment.md).
    """
    session.install("-e", ".[test]")
    if session.posargs[:1] == ["suite"]:
        # psutil: CPU and peak RSS of each deployment process; matplotlib: the latency plot.
        session.install("psutil", "matplotlib")
        session.run("python", "-m", "tests.benchmarks.suite", *session.posargs[1:])
        return
    if session.posargs[:1] == ["redis-memory"]:
        session.run("python", "-m", "tests.benchmarks.redis_memory", *session.posargs[1:])
        return
    if session.posargs[:1] == ["dcrf"]:
        session.install("djangochannelsrestframework")
        session.run("python", "-m", "tests.benchmarks.compare_dcrf", *session.posargs[1:])
        return
    session.run("python", "-m", "tests.benchmarks.fanout", *session.posargs)


# What the built artifacts must hold: a missing one means a user gets a broken install.
WHEEL_FILES = [
    "reactive_celery/__init__.py",
    "reactive_celery/py.typed",
    "reactive_celery/static/reactive_celery/reactive.js",
    "reactive_celery/static/reactive_celery/reactive.d.ts",
    "reactive_celery/static/reactive_celery/react.js",
    "reactive_celery/static/reactive_celery/vue.js",
]
NPM_FILES = {
    "package.json",
    "README.md",
    "LICENSE",
    *(
        f"reactive_celery/static/reactive_celery/{name}"
        for name in ("reactive.js", "reactive.d.ts", "react.js", "react.d.ts", "vue.js", "vue.d.ts")
    ),
}
# The smoke test's project: the README's settings, reduced to what `check` reads.
SMOKE_SETTINGS = """
SECRET_KEY = "package-smoke-test"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "reactive_celery",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
ROOT_URLCONF = "smokeproj.urls"
STATIC_URL = "static/"
ASGI_APPLICATION = "smokeproj.asgi.application"
REDIS_URL = "redis://127.0.0.1:6379"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": REDIS_URL + "/2", "socket_timeout": None}]},
    }
}
CELERY_BROKER_URL = REDIS_URL + "/1"
REACTIVE_CELERY = {"REDIS_URL": REDIS_URL + "/0"}
"""
SMOKE_FILES = {
    "smokeproj/__init__.py": "from .celery import app as celery_app\n",
    "smokeproj/celery.py": (
        "from celery import Celery\n"
        "app = Celery('smokeproj')\n"
        "app.config_from_object('django.conf:settings', namespace='CELERY')\n"
    ),
    "smokeproj/settings.py": SMOKE_SETTINGS,
    "smokeproj/urls.py": (
        "from django.urls import include, path\n"
        "urlpatterns = [path('api/queryobserver/', include('reactive_celery.urls'))]\n"
    ),
    "smokeproj/asgi.py": (
        "from django.core.asgi import get_asgi_application\n"
        "django_asgi_app = get_asgi_application()\n"
        "from channels.routing import ProtocolTypeRouter, URLRouter\n"
        "from reactive_celery.routing import websocket_urlpatterns\n"
        "application = ProtocolTypeRouter({'http': django_asgi_app, "
        "'websocket': URLRouter(websocket_urlpatterns)})\n"
    ),
}
# Run by the installed wheel's Python, outside the checkout, before any settings exist.
SMOKE_IMPORT = """
import importlib.resources, sys
import reactive_celery
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("django", "celery"))
assert not loaded, f"importing reactive_celery loaded {loaded}"
assert reactive_celery.__version__ == sys.argv[1], (reactive_celery.__version__, sys.argv[1])
assert "site-packages" in reactive_celery.__file__, reactive_celery.__file__
static = importlib.resources.files("reactive_celery") / "static" / "reactive_celery"
assert "export class ReactiveClient" in (static / "reactive.js").read_text()
assert (importlib.resources.files("reactive_celery") / "py.typed").is_file()
print("imported", reactive_celery.__file__, reactive_celery.__version__)
"""
NODE_SMOKE = """
const { ReactiveClient, applyDiff } = await import("reactive-celery");
if (typeof ReactiveClient !== "function" || typeof applyDiff !== "function") {
  throw new Error("missing exports");
}
for (const name of ["reactive-celery/react", "reactive-celery/vue"]) {
  const url = import.meta.resolve(name);
  if (!url.includes("/node_modules/reactive-celery/")) throw new Error(name + " -> " + url);
}
console.log("npm package imports:", Object.keys(await import("reactive-celery")).join(", "));
"""


def _members_of_sdist(path: Path) -> set[str]:
    with tarfile.open(path) as archive:
        # Every member sits under "<name>-<version>/".
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


@nox.session(python=DEFAULT_PYTHON)
def package(session: nox.Session) -> None:
    """Build the sdist, the wheel and the npm tarball, check them, install and smoke-test them.

    The wheel goes into a fresh virtual environment outside the checkout; there
    the package must import before Django is configured and a tiny project
    with reactive_celery in INSTALLED_APPS must pass ``django-admin check``.
    Needs node/npm on PATH for the npm part.
    """
    session.install("build>=1.2", "twine>=5.1")
    root = Path(__file__).resolve().parent
    tmp = Path(session.create_tmp()).resolve()
    dist = tmp / "dist"
    session.run("python", "-c", f"import shutil; shutil.rmtree({str(dist)!r}, ignore_errors=True)")
    session.run("python", "-m", "build", "--outdir", str(dist), str(root))
    artifacts = sorted(str(path) for path in dist.iterdir())
    session.run("twine", "check", "--strict", *artifacts)

    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    version = wheel.name.split("-")[1]
    npm_version = json.loads((root / "package.json").read_text())["version"]
    if npm_version != version:
        session.error(f"package.json says {npm_version}, the wheel {version}: keep them equal")

    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in WHEEL_FILES if name not in names]
    if missing:
        session.error(f"{wheel.name} lacks {missing}")
    if any(name.startswith(("tests/", "example_project/")) for name in names):
        session.error(f"{wheel.name} ships tests or the example project")

    # All of tests/ or none: the sdist ships every tracked test file, and nothing git ignores.
    shipped = _members_of_sdist(sdist)
    tracked = subprocess.run(
        ["git", "ls-files", "tests", "example_project", "reactive_celery"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    absent = sorted(set(tracked) - shipped)
    if absent:
        session.error(f"{sdist.name} lacks tracked files: {absent[:20]}")
    stray = sorted(name for name in shipped if name.endswith((".sqlite3", ".pyc")))
    if stray:
        session.error(f"{sdist.name} ships generated files: {stray}")
    session.log(f"{sdist.name}: {len(shipped)} files, every tracked test among them")

    venv = tmp / "venv"
    session.run("python", "-m", "venv", "--clear", str(venv))
    bin_dir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    python = str(bin_dir / "python")
    session.run(python, "-m", "pip", "install", "--quiet", str(wheel), external=True)
    project = tmp / "smoke"
    for name, text in SMOKE_FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(textwrap.dedent(text))
    # Outside the checkout, with a bare environment: only the installed wheel can be imported.
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": "", "HOME": str(tmp)}
    with session.chdir(project):
        session.run(python, "-c", SMOKE_IMPORT, version, env=env, external=True)
        session.run(
            str(bin_dir / "django-admin"),
            "check",
            "--settings=smokeproj.settings",
            "--pythonpath=.",
            "--fail-level=WARNING",
            env=env,
            external=True,
        )

    # The npm tarball: the files Django serves, and the exports resolve once installed.
    # Outside the checkout: under it, Node resolves "reactive-celery" to the checkout itself
    # (a package may import its own name), and a broken tarball would pass.
    npm = Path(tempfile.mkdtemp(prefix="reactive-npm-"))
    try:
        _check_npm_package(session, root, npm)
    finally:
        shutil.rmtree(npm, ignore_errors=True)


def _check_npm_package(session: nox.Session, root: Path, npm: Path) -> None:
    (npm / "node_modules").mkdir()
    session.run("npm", "pack", "--pack-destination", str(npm), str(root), external=True)
    [tarball] = npm.glob("reactive-celery-*.tgz")
    with tarfile.open(tarball) as archive:
        packed = {name.removeprefix("package/") for name in archive.getnames()}
        # The "data" filter refuses links and paths out of the target (Python 3.11.4+).
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(npm / "node_modules", **safe)
    if packed != NPM_FILES:
        session.error(
            f"{tarball.name}: missing {sorted(NPM_FILES - packed)}, "
            f"unexpected {sorted(packed - NPM_FILES)}"
        )
    (npm / "node_modules" / "package").rename(npm / "node_modules" / "reactive-celery")
    with session.chdir(npm):
        session.run("node", "--input-type=module", "-e", NODE_SMOKE, external=True)


@nox.session(python=DEFAULT_PYTHON)
def tutorial(session: nox.Session) -> None:
    """docs/tutorial.md, block by block, in a temporary directory (tests/tutorial/run_tutorial.py).

    The tutorial makes its own virtual environment and installs this checkout
    into it, so this session installs nothing. Needs redis-server on PATH.
    """
    session.run("python", "tests/tutorial/run_tutorial.py")
