"""docs/deployment/compose.yaml against the code it starts.

No compose runtime runs in CI (no image registry is reachable), so this reads
the file as compose would and checks every command names something that exists:
the Celery app, the ASGI application, the management commands, the settings
variables, and the worker flags docs/deployment.md recommends.
"""

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docs" / "deployment" / "compose.yaml"
EXAMPLE = ROOT / "example_project"


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_the_topology_is_complete_with_one_beat():
    found = services()
    assert set(found) == {
        "postgres",
        "redis",
        "migrate",
        "web-1",
        "web-2",
        "worker",
        "beat",
        "listen",
    }
    beats = [name for name, svc in found.items() if "beat" in (svc.get("command") or [])]
    assert beats == ["beat"]
    assert found["listen"]["profiles"] == ["triggers"]
    # Every app process waits for the one-off install and migration.
    for name in ("web-1", "web-2", "worker", "beat", "listen"):
        assert found[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }


def test_the_commands_name_what_exists():
    found = services()
    assert (EXAMPLE / "board" / "celery.py").exists()  # celery -A board
    assert found["web-1"]["command"][3] == "board.asgi:application"
    assert (EXAMPLE / "board" / "asgi.py").read_text().count("application") >= 1
    assert found["web-1"]["command"] == found["web-2"]["command"]
    script = found["migrate"]["command"][2]
    commands = {
        "load_sample_tasks": EXAMPLE / "tasks" / "management" / "commands" / "load_sample_tasks.py",
        "reactive_triggers": ROOT
        / "reactive_celery"
        / "management"
        / "commands"
        / "reactive_triggers.py",
    }
    for name, path in commands.items():
        assert f"manage.py {name}" in script and path.exists(), name
    assert found["listen"]["command"][-1] == "reactive_listen"


def test_the_worker_runs_the_command_the_guide_recommends():
    guide = (ROOT / "docs" / "deployment.md").read_text()
    block = guide.split("## The worker command for latency", 1)[1].split("\n\n", 2)[1]
    recommended = {flag for flag in block.split() if flag.startswith("-")}
    worker = services()["worker"]["command"]
    assert recommended - {"--concurrency=<cores>"} <= set(worker), recommended
    assert any(flag.startswith("--concurrency=") for flag in worker)


def test_the_environment_configures_postgresql_and_the_change_source():
    env = yaml.safe_load(COMPOSE.read_text())["x-app"]["environment"]
    env = {k: str(v).replace("${DEMO_CHANGE_SOURCE:-signals}", "signals") for k, v in env.items()}
    env.pop("PATH")
    probe = (
        "import json, django; django.setup(); from django.conf import settings; "
        "print(json.dumps([settings.DATABASES['default']['ENGINE'], "
        "settings.DATABASES['default']['HOST'], settings.CELERY_DB_REUSE_MAX, "
        "settings.REACTIVE_CELERY['CHANGE_SOURCE'], settings.CELERY_BROKER_URL]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=EXAMPLE,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "board.settings", **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == [
        "django.db.backends.postgresql",
        "postgres",
        100,
        "signals",
        "redis://redis:6379/1",
    ]
