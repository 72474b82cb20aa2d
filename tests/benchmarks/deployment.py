"""The benchmark deployment as real processes: Redis, a database, uvicorn, a Celery worker, beat.

    with PostgresCluster() as pg, Deployment(source=ROOT, database="postgres", pg=pg) as dep:
        dep.seed(groups=10, rows=10)
        dep.port, dep.counters(), dep.cpu_seconds(), dep.peak_rss_mb()

``source`` is the checkout whose ``reactive_celery`` the deployment imports:
every deployment process runs with its current directory and ``PYTHONPATH``
there (before the benchmark project in ``tests/benchmarks/project``), so the
package installed in the virtual environment, or the harness's own, is never
the one measured. The harness imports nothing from ``reactive_celery``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

__all__ = ["PROJECT", "ROOT", "Child", "Deployment", "PostgresCluster", "free_port"]

ROOT = Path(__file__).resolve().parents[2]
PROJECT = Path(__file__).resolve().parent / "project"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, child: Child, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if child.popen.poll() is not None:
                break
            time.sleep(0.05)
    raise RuntimeError(f"{child.name} is not listening on {port}:\n{child.tail()}")


class Child:
    """One deployment process in a session of its own, its output in a log file."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], cwd: Path, log_dir: Path
    ) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def wait_for_output(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not print {text!r}:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM to the process group (a worker's pool children too), SIGKILL after 20 s."""
        if self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)


def _pg_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("no initdb/pg_ctl under /usr/lib/postgresql/*/bin nor on PATH")


class PostgresCluster:
    """A private PostgreSQL (initdb in a temp dir, loopback, free port), as ``.ci/run`` starts.

    With ``REACTIVE_PG_HOST`` set, that server is used instead and only the
    benchmark's own databases are created and dropped there.
    """

    def __init__(self) -> None:
        self.external = "REACTIVE_PG_HOST" in os.environ
        self.host = os.environ.get("REACTIVE_PG_HOST", "127.0.0.1")
        self.port = int(os.environ.get("REACTIVE_PG_PORT", "5432"))
        self.user = os.environ.get("REACTIVE_PG_USER", "postgres")
        self.password = os.environ.get("REACTIVE_PG_PASSWORD", "")
        self.dir: Path | None = None
        self.version = ""
        self._count = 0

    def _as_owner(self, args: list[str]) -> list[str]:
        # initdb refuses to run as root: the cluster belongs to the postgres user then.
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args

    def __enter__(self) -> PostgresCluster:
        if self.external:
            return self
        pg_bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        initdb = [str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        initdb += ["--encoding=UTF8", "--locale=C"]
        subprocess.run(self._as_owner(initdb), cwd=self.dir, check=True, capture_output=True)
        for _ in range(5):  # a port found free can be taken before the server binds it
            port = free_port()
            # Defaults otherwise (fsync and synchronous_commit on): commits cost what they would.
            options = (
                f"-p {port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=200"
            )
            start = [str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "server.log")]
            start += ["-w", "-t", "60", "-o", options, "start"]
            if (
                subprocess.run(self._as_owner(start), cwd=self.dir, capture_output=True).returncode
                == 0
            ):
                self.port = port
                break
        else:
            raise RuntimeError(f"PostgreSQL did not start; see {self.dir / 'server.log'}")
        self._pg_ctl = [str(pg_bin / "pg_ctl"), "-D", str(data)]
        self.version = self._query("show server_version")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.dir is None:
            return
        stop = [*self._pg_ctl, "-m", "fast", "-w", "-t", "30", "stop"]
        subprocess.run(self._as_owner(stop), cwd=self.dir, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def _connect(self):
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname="postgres",
            autocommit=True,
        )

    def _query(self, sql: str) -> str:
        with self._connect() as conn:
            return str(conn.execute(sql).fetchone()[0])

    def create_database(self) -> str:
        self._count += 1
        name = f"bench_{os.getpid()}_{self._count}"
        with self._connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self._connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def postmaster_pid(self) -> int | None:
        if self.dir is None:
            return None
        pid_file = self.dir / "data" / "postmaster.pid"
        try:
            return int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


#: ASGI servers the benchmark can run: ``BENCH_ASGI_SERVER=daphne`` (needs the package).
ASGI_SERVERS = ("uvicorn", "daphne", "granian")


def asgi_command(py: str, port: int) -> list[str]:
    """The command line of the ASGI server named by ``BENCH_ASGI_SERVER`` (default uvicorn)."""
    server = os.environ.get("BENCH_ASGI_SERVER", "uvicorn")
    app = "benchproject.asgi:application"
    if server not in ASGI_SERVERS:
        raise SystemExit(f"BENCH_ASGI_SERVER={server!r}: use one of {', '.join(ASGI_SERVERS)}.")
    if importlib.util.find_spec(server) is None:
        raise SystemExit(f"BENCH_ASGI_SERVER={server}: pip install {server} first.")
    if server == "daphne":
        return [py, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0", app]
    if server == "granian":
        command = [py, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"]
        return command + ["--port", str(port), "--workers", "1", "--log-level", "warning", app]
    command = [py, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--lifespan", "off", "--ws", "websockets"]
    # docs/deployment.md: per-message deflate keeps a zlib stream per socket and
    # compresses every frame once per socket. BENCH_WS_DEFLATE=1 measures it on.
    deflate = "true" if os.environ.get("BENCH_WS_DEFLATE", "0") == "1" else "false"
    command += ["--ws-per-message-deflate", deflate]
    return command + ["--log-level", "warning", "--no-access-log"]


#: Worker layouts the benchmark can run (the suite's ``--worker``): ``prefork`` (Celery's
#: defaults), ``tuned`` (docs/deployment.md's command for latency) or ``solo`` (that
#: command's flags, one ``-P solo`` process per core: no pool process between the
#: broker and the evaluation).
WORKER_LAYOUTS = ("prefork", "tuned", "solo")
_LATENCY_FLAGS = ["--prefetch-multiplier=1", "--without-gossip", "--without-mingle"]


def worker_commands(
    py: str, layout: str, concurrency: int, name: str
) -> list[tuple[str, list[str]]]:
    """(role, command line) of each worker process of ``layout``."""
    if layout not in WORKER_LAYOUTS:
        raise ValueError(f"worker layout {layout!r}: use one of {', '.join(WORKER_LAYOUTS)}.")
    base = [py, "-m", "celery", "-A", "benchproject", "worker", "--loglevel=INFO"]
    if layout == "solo":
        return [
            (f"worker-{index}", [*base, "-P", "solo", "-n", f"{name}-{index}@%h", *_LATENCY_FLAGS])
            for index in range(1, concurrency + 1)
        ]
    command = [*base, "-P", "prefork", "-c", str(concurrency), "-n", f"{name}@%h"]
    if layout == "tuned":
        command += ["-O", "fair", *_LATENCY_FLAGS]
    return [("worker", command)]


class Deployment:
    """Redis, a fresh database, uvicorn, ``celery worker -P prefork -c 2`` (or the
    ``worker`` layout asked for) and ``celery beat``."""

    def __init__(
        self,
        source: Path,
        database: str = "sqlite",
        pg: PostgresCluster | None = None,
        concurrency: int = 2,
        worker: str = "prefork",
    ) -> None:
        self.source = Path(source)
        self.worker = worker
        self.database = database
        self.pg = pg
        self.concurrency = concurrency
        self.dir = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
        self.children: dict[str, Child] = {}
        self.port = 0
        self.env: dict[str, str] = {}
        self._pg_name: str | None = None

    # --- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> Deployment:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        redis_port = free_port()
        self.children["redis"] = Child(
            "redis",
            [shutil.which("redis-server") or "redis-server", "--port", str(redis_port)]
            + ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            dict(os.environ),
            self.dir,
            self.dir,
        )
        _wait_for_port(redis_port, self.children["redis"])
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "REDIS_", "REACTIVE_", "BENCH_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="benchproject.settings",
            PYTHONPATH=os.pathsep.join([str(self.source), str(PROJECT)]),
            PYTHONUNBUFFERED="1",
            PYTHONDONTWRITEBYTECODE="1",
            BENCH_REDIS_URL=f"redis://127.0.0.1:{redis_port}",
            BENCH_DATABASE=self.database,
        )
        if self.database == "postgres":
            assert self.pg is not None
            self._pg_name = self.pg.create_database()
            env.update(
                BENCH_PG_HOST=self.pg.host,
                BENCH_PG_PORT=str(self.pg.port),
                BENCH_PG_USER=self.pg.user,
                BENCH_PG_PASSWORD=self.pg.password,
                BENCH_PG_NAME=self._pg_name,
            )
        else:
            env["BENCH_SQLITE_PATH"] = str(self.dir / "bench.sqlite3")
        self.env = env
        self.manage("migrate", "--verbosity", "0")
        self.port = free_port()
        py = sys.executable
        # Django advises against persistent connections under ASGI; see the settings' docstring.
        # The role keeps the name "uvicorn" whichever server BENCH_ASGI_SERVER picks.
        pool = os.environ.get("BENCH_ASGI_POOL", "4") if self.database == "postgres" else "0"
        self._spawn(
            "uvicorn",
            asgi_command(py, self.port),
            BENCH_CONN_MAX_AGE="0",
            BENCH_PG_POOL=pool,
            # docs/deployment.md's collector thresholds for many sockets; "python": its own.
            BENCH_ASGI_GC=os.environ.get("BENCH_ASGI_GC", "deployment"),
        )
        for role, command in worker_commands(
            py, self.worker, self.concurrency, f"bench-{self.port}"
        ):
            self._spawn(role, command)
        beat = [py, "-m", "celery", "-A", "benchproject", "beat", "--loglevel=INFO"]
        beat += ["-s", str(self.dir / "beat-schedule")]
        self._spawn("beat", beat)
        _wait_for_port(self.port, self.children["uvicorn"])
        for role in self._workers():
            self.children[role].wait_for_output(" ready.")
        self.children["beat"].wait_for_output("beat: Starting...")

    def _spawn(self, name: str, args: list[str], **extra: str) -> None:
        self.children[name] = Child(name, args, {**self.env, **extra}, self.source, self.dir)

    def __exit__(self, *exc: object) -> None:
        if exc and exc[0] is not None:
            # The logs go with the temp dir: show why before they do.
            for child in self.children.values():
                print(f"--- {child.name} log (tail) ---\n{child.tail(2000)}", file=sys.stderr)
        for name in ("uvicorn", "beat", *self._workers(), "redis"):
            if name in self.children:
                self.children[name].stop()
        if self._pg_name and self.pg:
            self.pg.drop_database(self._pg_name)
            self._pg_name = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def _workers(self) -> list[str]:
        return [name for name in self.children if name.startswith("worker")]

    # --- management commands (the only way in besides HTTP and WebSocket) ---------

    def manage(self, *args: str, settings: str | None = None, timeout: float = 300) -> str:
        env = {**self.env, **({"DJANGO_SETTINGS_MODULE": settings} if settings else {})}
        done = subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=self.source,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-4000:]}")
        return done.stdout

    def seed(self, groups: int, rows: int) -> None:
        self.manage("bench_seed", "--groups", str(groups), "--rows", str(rows))

    def counters(self) -> dict:
        """``reactive_status --json`` of this deployment; ``{}`` where the revision lacks it."""
        try:
            return json.loads(self.manage("reactive_status", "--json"))
        except (RuntimeError, json.JSONDecodeError):
            return {}

    def package_path(self) -> str:
        """Where the deployment's ``reactive_celery`` is imported from (proof of the revision)."""
        code = "import reactive_celery; print(reactive_celery.__file__)"
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=self.source,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    # --- resources -------------------------------------------------------------------

    def processes(self) -> dict[str, psutil.Process]:
        """Role -> process: uvicorn, worker, each pool child, beat, redis, postgres (postmaster)."""
        found: dict[str, psutil.Process] = {}
        for name in ("uvicorn", *self._workers(), "beat", "redis"):
            child = self.children.get(name)
            if child and child.popen.poll() is None:
                found[name] = psutil.Process(child.popen.pid)
        if "worker" in found:
            pool = sorted(found["worker"].children(), key=lambda p: p.pid)
            for index, proc in enumerate(pool, 1):
                found[f"worker-child-{index}"] = proc
        pid = self.pg.postmaster_pid() if self.pg and self.database == "postgres" else None
        if pid:
            found["postgres"] = psutil.Process(pid)
        return found

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) so far, per role; postgres counts all its backends."""
        result: dict[str, float] = {}
        for role, proc in self.processes().items():
            try:
                procs = [proc, *proc.children(recursive=True)] if role == "postgres" else [proc]
                total = 0.0
                for p in procs:
                    t = p.cpu_times()
                    # children_*: reaped children (PostgreSQL's per-connection backends).
                    extra = t.children_user + t.children_system if role == "postgres" else 0
                    total += t.user + t.system + extra
                result[role] = total
            except psutil.Error:
                continue
        return result

    def peak_rss_mb(self) -> dict[str, float]:
        """Peak resident set (VmHWM) per role in MiB; postgres: its largest process."""
        result: dict[str, float] = {}
        for role, proc in self.processes().items():
            procs = [proc, *proc.children()] if role == "postgres" else [proc]
            peaks = [_vm_hwm_kib(p.pid) for p in procs]
            peaks = [p for p in peaks if p is not None]
            if peaks:
                result[role] = round(max(peaks) / 1024, 1)
        return result


def _vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None
