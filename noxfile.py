"""Nox sessions: the test suite (Python x database) and lint.

    nox                                        # lint, then tests on this Python, both databases
    nox -s tests                               # tests on every listed Python found here
    nox -s "tests-3.11(database='postgres')"   # one cell, as CI calls it
    nox -s lint
    nox -s js                                  # the browser client's unit tests (node --test)
    nox -s browser                             # the example project in Chromium, and run.py
    nox -s "compat(django='4.2')"              # the suite on SQLite with Django 4.2 LTS
    nox -s bench -- --sockets 200 --rate 10    # the fan-out benchmark
    nox -s bench -- suite --runs 3             # the scenario suite (docs/performance.md)
    nox -s tests -- -k observe -x              # arguments after -- go to pytest

The postgres cell uses REACTIVE_PG_HOST / REACTIVE_PG_PORT / REACTIVE_PG_USER /
REACTIVE_PG_PASSWORD (default 127.0.0.1:5432, user postgres). When no server
answers there it is skipped, unless REACTIVE_REQUIRE_ALL=1 or REACTIVE_PG_HOST
is set: then it fails, so CI never passes on a suite that did not run.
"""

from __future__ import annotations

import os
import socket
import sys

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
DATABASES = ["sqlite", "postgres"]
# Pinned: a new ruff release adds rules, and CI must not turn red by itself.
RUFF = "ruff==0.17.6"
PG_ENV = ("REACTIVE_PG_HOST", "REACTIVE_PG_PORT", "REACTIVE_PG_USER", "REACTIVE_PG_PASSWORD")

_current = f"{sys.version_info.major}.{sys.version_info.minor}"
DEFAULT_PYTHON = _current if _current in PYTHONS else PYTHONS[-1]

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "js", f"tests-{DEFAULT_PYTHON}", "browser"]
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
    scenario suite (tests/benchmarks/suite.py, docs/performance.md).
    """
    session.install("-e", ".[test]")
    if session.posargs[:1] == ["suite"]:
        # psutil: CPU and peak RSS of each deployment process; matplotlib: the latency plot.
        session.install("psutil", "matplotlib")
        session.run("python", "-m", "tests.benchmarks.suite", *session.posargs[1:])
        return
    if session.posargs[:1] == ["dcrf"]:
        session.install("djangochannelsrestframework")
        session.run("python", "-m", "tests.benchmarks.compare_dcrf", *session.posargs[1:])
        return
    session.run("python", "-m", "tests.benchmarks.fanout", *session.posargs)
