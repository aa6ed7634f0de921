"""No Docker engine here, so the compose file is checked statically: every service runs a command
the project really has, and every variable it sets is one that settings reads."""

import re
from pathlib import Path

import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_SOURCE = (ROOT / "maestro" / "settings.py").read_text()
# Read by the containers' tooling itself rather than by settings.
EXTERNAL_VARS = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}


def compose():
    return yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())


def settings_reads(name: str) -> bool:
    return re.search(rf"""["']{re.escape(name)}["']""", SETTINGS_SOURCE) is not None


def test_compose_has_every_service_with_a_healthcheck():
    services = compose()["services"]
    for name in ("web", "grpc", "worker", "beat", "postgres", "redis"):
        assert name in services
        assert "healthcheck" in services[name], name


def test_every_service_command_exists():
    commands = get_commands()
    for name, service in compose()["services"].items():
        command = service.get("command")
        if command is None or "image" in service:
            continue
        if command[:2] == ["python", "manage.py"]:
            assert command[2] in commands, f"{name}: manage.py {command[2]} does not exist"
        elif command[:2] == ["python", "-m"]:
            assert (ROOT / command[2].replace(".", "/")).with_suffix(".py").is_file(), f"{name}: no module {command[2]}"
        elif command[0] == "celery":
            assert (ROOT / command[command.index("-A") + 1].replace(".", "/")).with_suffix(".py").is_file()
            assert command[3] in {"worker", "beat"}
        else:
            raise AssertionError(f"{name}: unknown command {command}")


def test_every_variable_set_is_read_by_settings():
    for name, service in compose()["services"].items():
        for variable in (service.get("environment") or {}):
            assert variable in EXTERNAL_VARS or settings_reads(variable), f"{name} sets {variable}, which settings never reads"


def test_dockerfile_runs_as_non_root():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.MULTILINE)
