"""No Docker engine runs here, so the compose file is checked by reading it."""

from pathlib import Path

import pytest
import yaml

from order_engine.config import PROJECT_ROOT, Settings

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
ENGINE_SERVICES = ["migrate", "api", "worker", "scheduler", "flower"]


def test_compose_has_every_service_of_the_stack():
    assert {"postgres", "redis", "localnet", *ENGINE_SERVICES} <= set(SERVICES)


def test_the_engine_reaches_the_localnet_service_over_json_rpc():
    localnet = SERVICES["localnet"]
    assert localnet["command"][:2] == ["order-engine", "localnet"]
    port = localnet["environment"]["LOCALNET_PORT"]
    for name in ENGINE_SERVICES:
        assert SERVICES[name]["environment"]["SOLANA_RPC_URL"] == f"http://localnet:{port}"


@pytest.mark.parametrize("name", ["postgres", "redis", "localnet", "api", "worker", "flower"])
def test_long_running_services_have_health_checks(name):
    assert SERVICES[name]["healthcheck"]["test"]


def test_redis_persists_and_never_evicts():
    command = " ".join(SERVICES["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command


def test_ports_are_published_for_the_api_and_flower():
    assert "8000:8000" in SERVICES["api"]["ports"]
    assert "5555:5555" in SERVICES["flower"]["ports"]


@pytest.mark.parametrize("name", ENGINE_SERVICES)
def test_engine_services_get_a_configuration_the_engine_accepts(name):
    env = {k: str(v) for k, v in SERVICES[name]["environment"].items()}
    env.setdefault("FLOWER_BASIC_AUTH", "x:y")
    settings = Settings.from_env(env)
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "PORT"} <= set(env)


def test_engine_services_wait_for_healthy_databases_and_migrations():
    for name in ["api", "worker", "scheduler"]:
        depends = SERVICES[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_commands_are_real_cli_commands():
    from order_engine.ops.cli import _parser

    parser = _parser()
    for name in ENGINE_SERVICES:
        command = SERVICES[name]["command"]
        assert command[0] == "order-engine"
        parser.parse_args(command[1:])


def test_image_build_context_has_a_dockerfile():
    assert Path(PROJECT_ROOT / "Dockerfile").is_file()


def _seconds(duration: str) -> int:
    return int(duration.removesuffix("s"))


def test_workers_scale_out_with_docker_compose_scale():
    """`docker compose up --scale worker=M`: nothing in the worker service pins one instance,
    and each gets the time to stop that the worker itself takes at most."""
    worker = SERVICES["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "--hostname" not in worker["command"]  # the CLI's `worker@%h`: unique per container
    env = {k: str(v) for k, v in worker["environment"].items()}
    stop_bound_s = Settings.from_env(env).worker_stop_bound_s
    assert _seconds(worker["stop_grace_period"]) >= stop_bound_s
