"""The command lines of the stack's processes, from the settings: `make run`'s supervisor, the
tests' and the benchmark's launcher (order_engine/ops/launch.py) start the same ones."""

from __future__ import annotations

import sys

from order_engine.config import ConfigError, Settings, _process_environment
from order_engine.ops import embedded
from order_engine.ops.supervisor import Program

CELERY_APP = "workers.celery_app"


def api_program(settings: Settings) -> Program:
    # gevent by default: a WebSocket holds its handler for its whole life, which costs a
    # greenlet under gevent but two OS threads under gthread (docs/design.md, "Why gevent").
    concurrency = (
        ["--worker-connections", str(settings.api_worker_connections)]
        if settings.api_worker_class == "gevent"
        else ["--threads", str(settings.api_threads)]
    )
    return Program(
        "api",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "order_engine.wsgi:app",
            "--config",
            "python:order_engine.ops.gunicorn_conf",
            "--bind",
            f"0.0.0.0:{settings.port}",
            "--worker-class",
            settings.api_worker_class,
            "--workers",
            str(settings.api_workers),
            *concurrency,
            "--timeout",
            "60",
            "--log-level",
            settings.log_level.lower(),
        ],
        # gunicorn's own graceful_timeout (gunicorn_conf.py), then a margin.
        stop_grace_s=25,
    )


def localnet_program(settings: Settings) -> Program:
    """The simulated chain, as its own process: the engine reaches it only over JSON-RPC."""
    return Program(
        "localnet",
        [sys.executable, "-m", "order_engine.localnet", "serve"],
        stop_grace_s=10,
        stop_last=True,  # workers finishing their swaps still need the chain
    )


def runs_own_localnet() -> bool:
    """`make run` starts the localnet unless SOLANA_RPC_URL names another node."""
    return not _process_environment().get("SOLANA_RPC_URL")


def worker_program(settings: Settings) -> Program:
    # Tasks mostly wait on the venues (quotes, landing), so a gevent pool runs hundreds at
    # once; two prefork children would run two (docs/design.md, "Why gevent").
    return Program(
        "worker",
        [
            sys.executable,
            "-m",
            "celery",
            *_quiet_when_json(settings),
            "-A",
            CELERY_APP,
            "worker",
            "--pool",
            settings.worker_pool,
            "--concurrency",
            str(settings.worker_concurrency),
            "--queues",
            "orders,control",
            *(["--task-events"] if settings.task_events else []),
            "--hostname",
            "worker@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            settings.log_level,
        ],
        # A warm shutdown waits for running tasks, which the time limit bounds; the worker
        # also hard-stops itself after this long (workers/celery_app.py).
        stop_grace_s=settings.worker_stop_bound_s + 5,
    )


def _quiet_when_json(settings: Settings) -> list[str]:
    """Celery prints a plain-text banner at start; with JSON logs every line must be JSON."""
    return ["--quiet"] if settings.log_format == "json" else []


def scheduler_program(settings: Settings) -> Program:
    schedule_file = embedded.STATE_DIR / "celerybeat-schedule"
    schedule_file.parent.mkdir(parents=True, exist_ok=True)
    return Program(
        "scheduler",
        [
            sys.executable,
            "-m",
            "celery",
            *_quiet_when_json(settings),
            "-A",
            CELERY_APP,
            "beat",
            "--schedule",
            str(schedule_file),
            "--loglevel",
            settings.log_level,
        ],
        stop_grace_s=10,
    )


def flower_program(settings: Settings) -> Program:
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        CELERY_APP,
        "flower",
        f"--port={settings.flower_port}",
    ]
    # Flower can re-launch tasks; an order system keeps it read-only, and without credentials
    # it listens on loopback only (docs/operating.md, "Flower").
    argv.append("--read_only=True")
    basic_auth = settings.flower_basic_auth
    address = settings.flower_address or ("0.0.0.0" if basic_auth else "127.0.0.1")
    if not _is_loopback(address) and ":" not in basic_auth:
        raise ConfigError(
            f"FLOWER_ADDRESS={address} is beyond loopback: set FLOWER_BASIC_AUTH=user:password "
            "(Flower shows every order's task and its arguments)"
        )
    if basic_auth:
        argv.append("--basic_auth=" + basic_auth)
    argv.append("--address=" + address)
    return Program("flower", argv, stop_grace_s=10)


def _is_loopback(address: str) -> bool:
    import ipaddress

    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere
