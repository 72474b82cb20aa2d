"""docs/deployment/compose.yaml names processes, commands and settings that exist."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docs" / "deployment" / "compose.yaml"
DEMO = ROOT / "example_project"


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_every_process_of_the_topology_is_there():
    assert {"postgres", "redis", "web-1", "web-2", "worker", "beat", "reactive-listen"} <= set(
        services()
    )


def test_manage_commands_exist():
    commands = {
        path.stem
        for path in [
            *(ROOT / "reactive_celery" / "management" / "commands").glob("*.py"),
            *(DEMO / "tasks" / "management" / "commands").glob("*.py"),
        ]
    }
    named = ["reactive_listen", "reactive_triggers", "load_sample_tasks", "migrate"]
    script = services()["migrate"]["command"] + " ".join(services()["reactive-listen"]["command"])
    for name in named:
        assert name in script, name
        assert name in commands or name == "migrate", name


def test_web_and_celery_commands_point_at_the_demo():
    for name in ("web-1", "web-2"):
        command = services()[name]["command"]
        assert command[:3] == ["python", "-m", "uvicorn"]
        module, _, attribute = command[3].partition(":")
        assert (DEMO / (module.replace(".", "/") + ".py")).read_text().count(f"{attribute} =")
    for name in ("worker", "beat"):
        command = services()[name]["command"]
        assert command[:3] == ["celery", "-A", "board"] and (DEMO / "board" / "celery.py").exists()


def test_the_worker_consumes_the_queue_reactive_work_goes_to():
    worker = services()["worker"]
    queue = worker["command"][worker["command"].index("-Q") + 1]
    assert queue == worker["environment"]["DEMO_REACTIVE_QUEUE"]
    settings = (DEMO / "board" / "settings.py").read_text()
    for variable in ("DEMO_REACTIVE_QUEUE", "DEMO_CHANGE_SOURCE", "DEMO_PG_HOST"):
        assert variable in settings, variable
    assert worker["environment"]["DEMO_CHANGE_SOURCE"] == "triggers"  # hence reactive-listen
