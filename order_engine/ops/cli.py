"""`order-engine` command: run the stack or one of its processes, migrate, manage servers.

Every command first resolves where PostgreSQL and Redis are: the URLs in the environment when
set, else the embedded servers under `.state/` (started or adopted here and stopped on every exit
path: normal, configuration error, exception, Ctrl-C, SIGTERM, SIGHUP).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence

from order_engine.config import ConfigError, Settings, startup_log_format
from order_engine.ops import accounts_cli, embedded, keys_cli, run_file
from order_engine.ops.environment import (
    Environment,
    _migrate,
    access_service,
    announce,
    fresh_metrics_dir,
    preview_settings,
)
from order_engine.ops.keys_cli import DEV_KEY_PATH, ensure_dev_key
from order_engine.ops.programs import (
    api_program,
    flower_program,
    localnet_program,
    runs_own_localnet,
    scheduler_program,
    worker_program,
)
from order_engine.ops.supervisor import Program, Supervisor


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["localnet"]:
        # The localnet has its own command line (serve, move, launch, …, and their --help).
        from order_engine.localnet.cli import main as localnet_main

        return localnet_main(args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    _configure_logs(args)
    warnings.filterwarnings("ignore", module="platformdirs")
    _exit_on_signals()
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except embedded.AlreadyRunning as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1


def _configure_logs(args: argparse.Namespace) -> None:
    """The processes of the stack log what they do (INFO); a one-shot command prints what it was
    asked for and logs only warnings and errors, unless `-v` asks for the rest (the embedded
    servers' start, the migrations). pgserver's INFO lines echo its commands and Alembic's
    plugin lines list its setup: only with `-v`, for every command."""
    from order_engine.infra import logs

    serves = args.handler in {cmd_run, cmd_api, cmd_worker, cmd_scheduler, cmd_flower}
    logs.configure("INFO" if serves or args.verbose else "WARNING", startup_log_format())
    if not args.verbose:
        for chatty in ("pgserver", "alembic.runtime.plugins"):
            logging.getLogger(chatty).setLevel(logging.WARNING)


def _exit_on_signals() -> None:
    """SIGTERM and SIGHUP raise SystemExit, as Ctrl-C raises KeyboardInterrupt, so that the
    `finally` that stops the embedded servers runs however the command is stopped. (The
    supervisor installs its own handlers while it runs, and restores these after.)"""

    def exit_now(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, exit_now)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="order-engine", description=__doc__)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log what the command does on stderr"
    )
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
    keys_cli.add_commands(sub)  # keys create|list|revoke
    accounts_cli.add_commands(sub, access_service)  # accounts list|show|set-limits
    from order_engine import client

    client.add_commands(sub)  # submit, orders list|show|cancel|watch: the integrators' client
    revision = sub.add_parser("revision", help="autogenerate a migration from the models")
    revision.add_argument("-m", "--message", required=True)
    revision.set_defaults(handler=cmd_revision)
    return parser


def cmd_run(_args: argparse.Namespace) -> int:
    # Refuse a second stack in this folder before anything starts: its API could not bind,
    # and its worker and scheduler would silently join the first stack.
    lock = embedded.RunLock()
    lock.acquire(port=preview_settings().port)
    try:
        with Environment() as environment:
            _migrate(environment.settings)
            settings = environment.settings
            fresh_metrics_dir(environment.env["PROMETHEUS_MULTIPROC_DIR"])
            programs = [
                api_program(settings),
                worker_program(settings),
                scheduler_program(settings),
            ]
            if runs_own_localnet():
                programs.insert(0, localnet_program(settings))
            # The ports chosen, for the client and localnet commands of this folder.
            run_file.write(settings, own_localnet=runs_own_localnet())
            print(
                f"Order Engine: API on http://127.0.0.1:{settings.port}  (Ctrl-C stops everything)",
                flush=True,
            )
            if environment.servers is not None:
                key = ensure_dev_key(settings)
                print(
                    f"Development API key (default account; again with `cat {DEV_KEY_PATH}`):\n"
                    f"  export ORDER_ENGINE_KEY={key}\n"
                    '  curl -H "Authorization: Bearer $ORDER_ENGINE_KEY" '
                    f"localhost:{settings.port}/api/orders",
                    flush=True,
                )
            return Supervisor(programs, environment.env).run()
    finally:
        run_file.remove()
        lock.release()


def _single(program_factory: Callable[[Settings], Program]) -> int:
    with Environment() as environment:
        return Supervisor([program_factory(environment.settings)], environment.env).run()


def cmd_api(_args: argparse.Namespace) -> int:
    return _single(api_program)


def cmd_worker(_args: argparse.Namespace) -> int:
    return _single(worker_program)


def cmd_scheduler(_args: argparse.Namespace) -> int:
    return _single(scheduler_program)


def cmd_flower(_args: argparse.Namespace) -> int:
    return _single(flower_program)


def cmd_migrate(_args: argparse.Namespace) -> int:
    with Environment() as environment:
        announce(environment.settings.database_url)
        migrated = _migrate(environment.settings)
    print("database migrated to head" if migrated else "database already at head")
    return 0


def cmd_localnet(args: argparse.Namespace) -> int:
    """`order-engine localnet [serve|move|launch|drain|congest|fault|status] …`"""
    from order_engine.localnet.cli import main as localnet_main

    return localnet_main(list(args.localnet_args))


# The first reconciler run needs the worker booted (Celery, gevent, the app) and beat's first
# tick: measured 8 s after `make run` wrote its run file, on two cores shared with other test
# runs. The grace allows this long on top of the check's own limit: a slower start (a loaded
# host, a cold disk) is not called unhealthy, and a worker that never consumes is within 85 s.
WORKER_BOOT_S = 60


def cmd_check_worker(_args: argparse.Namespace) -> int:
    """Liveness of consumption, not just of the process: a wedged worker fails it. Within the
    start-up grace of this folder's `make run` (.state/run.json) a missing run is `starting`."""
    from order_engine.infra.redis_client import make_redis
    from order_engine.services.reconciler import heartbeat_age_s

    # The same servers `make run` uses: the URLs when set, else the running embedded ones.
    settings = Environment(start_servers=False).settings
    announce(settings.redis_url)
    age = heartbeat_age_s(make_redis(settings))
    limit = settings.reconcile_interval_s * 3 + 10
    if age is not None and age <= limit:
        print(f"healthy: the reconciler ran {age:.1f}s ago")
        return 0
    shown = "never" if age is None else f"{age:.0f}s ago"
    running = run_file.read()
    since_start = None if running is None else time.time() - float(running["startedAt"])
    grace = limit + WORKER_BOOT_S
    if since_start is not None and since_start < grace:
        print(
            f"starting: the stack started {since_start:.0f}s ago and the reconciler last ran "
            f"{shown} (start-up grace {grace}s)"
        )
        return 0
    print(f"unhealthy: the reconciler last ran {shown} (limit {limit}s)", file=sys.stderr)
    return 1


def cmd_revision(args: argparse.Namespace) -> int:
    from alembic import command

    from order_engine.ops import migrate

    with Environment() as environment:
        announce(environment.settings.database_url)
        _migrate(environment.settings)
        config = migrate.alembic_config(environment.settings.database_url)
        command.revision(config, message=args.message, autogenerate=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
