"""`order-engine` command: run the stack or one of its processes, migrate, manage servers.

Every command first resolves where PostgreSQL and Redis are: the URLs in the environment when
set, else the embedded servers under `.state/` (started here, stopped on exit).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from order_engine import embedded
from order_engine.config import ConfigError, Settings
from order_engine.supervisor import Program, Supervisor

log = logging.getLogger("order_engine.cli")

CELERY_APP = "workers.celery_app"


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["localnet"]:
        # The localnet has its own command line (serve, move, launch, …, and their --help).
        from order_engine.localnet.cli import main as localnet_main

        return localnet_main(args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", module="platformdirs")
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="order-engine", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="command")
    commands = {
        "run": (cmd_run, "API + worker + scheduler as one supervised group"),
        "api": (cmd_api, "the gunicorn API server"),
        "worker": (cmd_worker, "a Celery worker"),
        "scheduler": (cmd_scheduler, "Celery beat (runs the reconciler)"),
        "flower": (cmd_flower, "Celery Flower, the operators' task monitor"),
        "migrate": (cmd_migrate, "upgrade the database to the latest migration"),
    }
    for name, (handler, help_text) in commands.items():
        command = sub.add_parser(name, help=help_text)
        command.set_defaults(handler=handler)
    localnet = sub.add_parser(
        "localnet",
        help="the local Solana validator with the Raydium/Meteora pools (serve, move, launch, …)",
        add_help=False,
    )
    localnet.add_argument("localnet_args", nargs=argparse.REMAINDER)
    localnet.set_defaults(handler=cmd_localnet)
    check = sub.add_parser(
        "check-worker", help="exit 1 unless a worker ran the reconciler recently (healthcheck)"
    )
    check.set_defaults(handler=cmd_check_worker)
    revision = sub.add_parser("revision", help="autogenerate a migration from the models")
    revision.add_argument("-m", "--message", required=True)
    revision.set_defaults(handler=cmd_revision)
    return parser


class Environment:
    """The process environment with DATABASE_URL / REDIS_URL filled in (embedded if unset)."""

    def __init__(self) -> None:
        self.env = dict(os.environ)
        self.servers: embedded.EmbeddedServers | None = None
        from order_engine.config import _process_environment

        configured = _process_environment()
        if not configured.get("DATABASE_URL") or not configured.get("REDIS_URL"):
            log.info(
                "DATABASE_URL/REDIS_URL unset: using embedded servers in %s", embedded.STATE_DIR
            )
            self.servers = embedded.start()
            # Child processes must use the same servers, whatever .env says.
            self.env["DATABASE_URL"] = configured.get("DATABASE_URL") or self.servers.database_url
            self.env["REDIS_URL"] = configured.get("REDIS_URL") or self.servers.redis_url
        self.settings = Settings.from_env({**configured, **self.env})

    def close(self) -> None:
        if self.servers is not None:
            log.info("stopping embedded servers")
            self.servers.stop()


def _migrate(settings: Settings) -> None:
    from order_engine import migrate

    migrate.upgrade(settings.database_url)
    log.info("database migrated to head")


def api_program(settings: Settings) -> Program:
    # gevent by default: a WebSocket holds its handler for its whole life, which costs a
    # greenlet under gevent but two OS threads under gthread (README, "Why gevent").
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
            "python:order_engine.gunicorn_conf",
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
    )


def localnet_program(settings: Settings) -> Program:
    """The simulated chain, as its own process: the engine reaches it only over JSON-RPC."""
    return Program("localnet", [sys.executable, "-m", "order_engine.localnet", "serve"])


def runs_own_localnet() -> bool:
    """`make run` starts the localnet unless SOLANA_RPC_URL names another node."""
    from order_engine.config import _process_environment

    return not _process_environment().get("SOLANA_RPC_URL")


def worker_program(settings: Settings) -> Program:
    # Tasks mostly wait on the venues (quotes, landing), so a gevent pool runs hundreds at
    # once; two prefork children would run two (research/perf.md §3b).
    return Program(
        "worker",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            CELERY_APP,
            "worker",
            "--pool",
            settings.worker_pool,
            "--concurrency",
            str(settings.worker_concurrency),
            "--queues",
            "orders,control",
            "--task-events",
            "--hostname",
            "worker@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            settings.log_level,
        ],
    )


def scheduler_program(settings: Settings) -> Program:
    schedule_file = embedded.STATE_DIR / "celerybeat-schedule"
    schedule_file.parent.mkdir(parents=True, exist_ok=True)
    return Program(
        "scheduler",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            CELERY_APP,
            "beat",
            "--schedule",
            str(schedule_file),
            "--loglevel",
            settings.log_level,
        ],
    )


def flower_program(settings: Settings) -> Program:
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        CELERY_APP,
        "flower",
        "--port=" + os.environ.get("FLOWER_PORT", "5555"),
    ]
    # Flower can re-launch tasks; an order system keeps it read-only, and without credentials
    # it listens on loopback only (research/reliability.md §4).
    argv.append("--read_only=True")
    if os.environ.get("FLOWER_BASIC_AUTH"):
        argv.append("--basic_auth=" + os.environ["FLOWER_BASIC_AUTH"])
    else:
        argv.append("--address=127.0.0.1")
    return Program("flower", argv)


def cmd_run(_args: argparse.Namespace) -> int:
    environment = Environment()
    try:
        _migrate(environment.settings)
        settings = environment.settings
        programs = [api_program(settings), worker_program(settings), scheduler_program(settings)]
        if runs_own_localnet():
            programs.insert(0, localnet_program(settings))
        print(f"Order Engine: API on http://127.0.0.1:{settings.port}  (Ctrl-C stops everything)")
        return Supervisor(programs, environment.env).run()
    finally:
        environment.close()


def _single(program_factory) -> int:
    environment = Environment()
    try:
        return Supervisor([program_factory(environment.settings)], environment.env).run()
    finally:
        environment.close()


def cmd_api(_args: argparse.Namespace) -> int:
    return _single(api_program)


def cmd_worker(_args: argparse.Namespace) -> int:
    return _single(worker_program)


def cmd_scheduler(_args: argparse.Namespace) -> int:
    return _single(scheduler_program)


def cmd_flower(_args: argparse.Namespace) -> int:
    return _single(flower_program)


def cmd_migrate(_args: argparse.Namespace) -> int:
    environment = Environment()
    try:
        _migrate(environment.settings)
    finally:
        environment.close()
    return 0


def cmd_localnet(args: argparse.Namespace) -> int:
    """`order-engine localnet [serve|move|launch|drain|congest|fault|status] …`"""
    from order_engine.localnet.cli import main as localnet_main

    return localnet_main(list(args.localnet_args))


def cmd_check_worker(_args: argparse.Namespace) -> int:
    """Liveness of consumption, not just of the process: a wedged worker fails it."""
    from order_engine.redis_client import make_redis
    from order_engine.services.reconciler import heartbeat_age_s

    settings = Settings.from_env()
    age = heartbeat_age_s(make_redis(settings))
    limit = settings.reconcile_interval_s * 3 + 10
    if age is None or age > limit:
        shown = "never" if age is None else f"{age:.0f}s ago"
        print(f"unhealthy: the reconciler last ran {shown} (limit {limit}s)", file=sys.stderr)
        return 1
    print(f"healthy: the reconciler ran {age:.1f}s ago")
    return 0


def cmd_revision(args: argparse.Namespace) -> int:
    from alembic import command

    from order_engine import migrate

    environment = Environment()
    try:
        _migrate(environment.settings)
        config = migrate.alembic_config(environment.settings.database_url)
        command.revision(config, message=args.message, autogenerate=True)
    finally:
        environment.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
