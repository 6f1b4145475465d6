"""`order-engine` command: run the stack or one of its processes, migrate, manage servers.

Every command first resolves where PostgreSQL and Redis are: the URLs in the environment when
set, else the embedded servers under `.state/` (started or adopted here and stopped on every exit
path: normal, configuration error, exception, Ctrl-C, SIGTERM, SIGHUP).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from order_engine.config import ConfigError, Settings, _process_environment, startup_log_format
from order_engine.ops import accounts_cli, embedded
from order_engine.ops.supervisor import Program, Supervisor

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from order_engine.services.access import AccessService

log = logging.getLogger("order_engine.ops.cli")

CELERY_APP = "workers.celery_app"


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["localnet"]:
        # The localnet has its own command line (serve, move, launch, …, and their --help).
        from order_engine.localnet.cli import main as localnet_main

        return localnet_main(args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    from order_engine.infra import logs

    logs.configure("INFO", startup_log_format())
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
    keys = sub.add_parser("keys", help="API keys: create, list, revoke (docs/api.md)")
    keys_sub = keys.add_subparsers(required=True, metavar="action")
    create = keys_sub.add_parser(
        "create", help="create a key (shown once, on the last line) for an account"
    )
    create.add_argument("--account", default="default", help="account name (created if new)")
    create.add_argument("--name", default="key", help="what the key is for")
    create.add_argument(
        "--scopes",
        default="orders:read,orders:write",
        help="comma-separated: orders:read, orders:write, admin (default: the first two)",
    )
    create.set_defaults(handler=cmd_keys_create)
    listing = keys_sub.add_parser("list", help="every key: prefix, account, name, scopes, state")
    listing.set_defaults(handler=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its prefix (or the whole key)")
    revoke.add_argument("key", help="the key's prefix, as `keys list` shows it")
    revoke.set_defaults(handler=cmd_keys_revoke)
    accounts_cli.add_commands(sub, access_service)  # accounts list|show|set-limits
    from order_engine import client

    client.add_commands(sub)  # submit, orders list|show|cancel|watch: the integrators' client
    revision = sub.add_parser("revision", help="autogenerate a migration from the models")
    revision.add_argument("-m", "--message", required=True)
    revision.set_defaults(handler=cmd_revision)
    return parser


METRICS_DIR = embedded.STATE_DIR / "metrics"


def fresh_metrics_dir(path: str) -> None:
    """Empty the metrics folder before a whole stack starts: the files of the processes of an
    earlier run (which may have been killed outright) must not count in this one."""
    import shutil
    from pathlib import Path

    folder = Path(path)
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)


EMBEDDED_PLACEHOLDERS = {
    "DATABASE_URL": "postgresql://embedded/db",
    "REDIS_URL": "redis://embedded/0",
}


def preview_settings() -> Settings:
    """The settings, validated before anything starts (embedded URLs not known yet)."""
    configured = _process_environment()
    placeholders = {
        name: configured.get(name) or url for name, url in EMBEDDED_PLACEHOLDERS.items()
    }
    return Settings.from_env({**configured, **placeholders})


class Environment:
    """The process environment with DATABASE_URL / REDIS_URL filled in (embedded if unset).

    With `start_servers=False` (read-only commands such as `check-worker`) the embedded servers
    are only looked up, never started. Use as a context manager: leaving it stops the embedded
    servers this process owns, whatever the way out.
    """

    def __init__(self, *, start_servers: bool = True) -> None:
        self.env = dict(os.environ)
        # Every process started from here writes its metrics where the API's /metrics reads
        # them (order_engine/infra/metrics.py).
        self.env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(METRICS_DIR))
        self.servers: embedded.EmbeddedServers | None = None
        configured = _process_environment()
        if configured.get("DATABASE_URL") and configured.get("REDIS_URL"):
            self.settings = Settings.from_env(configured)
            return
        # A malformed value stops us before any server is started (nothing to leak).
        preview_settings()
        if start_servers:
            log.info(
                "DATABASE_URL/REDIS_URL unset: using embedded servers in %s", embedded.STATE_DIR
            )
            self.servers = embedded.start()
            urls = self.servers.database_url, self.servers.redis_url
        else:
            found = embedded.running_urls()
            if found is None:
                raise ConfigError(
                    "DATABASE_URL/REDIS_URL are unset and the embedded servers in "
                    f"{embedded.STATE_DIR} are not running (start them with `make run`)"
                )
            urls = found
        try:
            # Child processes must use the same servers, whatever .env says.
            self.env["DATABASE_URL"] = configured.get("DATABASE_URL") or urls[0]
            self.env["REDIS_URL"] = configured.get("REDIS_URL") or urls[1]
            self.settings = Settings.from_env({**configured, **self.env})
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Environment:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.servers is not None:
            log.info("stopping embedded servers")
            self.servers.stop()
            self.servers = None


def _migrate(settings: Settings) -> None:
    from order_engine.ops import migrate

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
    from order_engine.config import _process_environment

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
        _migrate(environment.settings)
    return 0


def cmd_localnet(args: argparse.Namespace) -> int:
    """`order-engine localnet [serve|move|launch|drain|congest|fault|status] …`"""
    from order_engine.localnet.cli import main as localnet_main

    return localnet_main(list(args.localnet_args))


def cmd_check_worker(_args: argparse.Namespace) -> int:
    """Liveness of consumption, not just of the process: a wedged worker fails it."""
    from order_engine.infra.redis_client import make_redis
    from order_engine.services.reconciler import heartbeat_age_s

    # The same servers `make run` uses: the URLs when set, else the running embedded ones.
    settings = Environment(start_servers=False).settings
    age = heartbeat_age_s(make_redis(settings))
    limit = settings.reconcile_interval_s * 3 + 10
    if age is None or age > limit:
        shown = "never" if age is None else f"{age:.0f}s ago"
        print(f"unhealthy: the reconciler last ran {shown} (limit {limit}s)", file=sys.stderr)
        return 1
    print(f"healthy: the reconciler ran {age:.1f}s ago")
    return 0


def _access_service(settings: Settings) -> tuple[Engine, AccessService]:
    from sqlalchemy.orm import Session

    from order_engine.infra.db import make_engine
    from order_engine.services.access import AccessService

    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    return engine, AccessService(Session(engine, expire_on_commit=False))


@contextmanager
def access_service() -> Iterator[tuple[Settings, AccessService]]:
    """The settings and the access service on the migrated database (the embedded servers'
    when DATABASE_URL/REDIS_URL are unset), for the `keys` and `accounts` commands."""
    with Environment() as environment:
        _migrate(environment.settings)
        engine, service = _access_service(environment.settings)
        try:
            yield environment.settings, service
        finally:
            engine.dispose()


def cmd_keys_create(args: argparse.Namespace) -> int:
    from order_engine.errors import OrderEngineError

    with access_service() as (_settings, service):
        try:
            created = service.create_key(
                args.account, args.name, [s.strip() for s in args.scopes.split(",") if s.strip()]
            )
        except OrderEngineError as exc:
            print(f"refused: {exc.description}", file=sys.stderr)
            return 2
    print(
        f"Created API key {created.key.prefix} ({created.key.name!r}) for account "
        f"{created.account.name!r} with scopes {', '.join(created.key.scopes)}. It is shown "
        "only now; send it as `Authorization: Bearer <key>`:"
    )
    print(created.secret)
    return 0


def cmd_keys_list(_args: argparse.Namespace) -> int:
    with access_service() as (_settings, service):
        rows = service.list_keys()
    print(f"{'prefix':<10} {'account':<20} {'name':<20} {'scopes':<34} {'created':<20} state")
    for key, account in rows:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        print(
            f"{key.prefix:<10} {account.name[:20]:<20} {key.name[:20]:<20} "
            f"{','.join(key.scopes):<34} {key.created_at:%Y-%m-%d %H:%M}     {state}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from order_engine.errors import OrderEngineError

    with access_service() as (settings, service):
        try:
            key = service.revoke(args.key)
        except OrderEngineError as exc:
            print(f"refused: {exc.description}", file=sys.stderr)
            return 1
    print(
        f"Revoked API key {key.prefix} ({key.name!r}); every API process refuses it within "
        f"API_KEY_CACHE_S ({settings.api_key_cache_s} s)."
    )
    return 0


DEV_KEY_PATH = embedded.STATE_DIR / "dev-api-key"


def ensure_dev_key(settings: Settings) -> str:
    """`make run` on the embedded default: the development key of the default account, created
    on first start and kept in .state/dev-api-key (git-ignored) so it can be printed again."""
    from order_engine.services.access import KEY_PATTERN

    if DEV_KEY_PATH.exists():
        saved = DEV_KEY_PATH.read_text().strip()
        engine, service = _access_service(settings)
        try:
            if KEY_PATTERN.match(saved) and service.authenticate(saved) is not None:
                return saved
        finally:
            engine.dispose()
    engine, service = _access_service(settings)
    try:
        created = service.create_key("default", "make run (development)", SCOPES_DEV)
    finally:
        engine.dispose()
    DEV_KEY_PATH.parent.mkdir(parents=True, exist_ok=True)
    DEV_KEY_PATH.touch(mode=0o600)
    DEV_KEY_PATH.write_text(created.secret + "\n")
    return created.secret


SCOPES_DEV = ("orders:read", "orders:write")


def cmd_revision(args: argparse.Namespace) -> int:
    from alembic import command

    from order_engine.ops import migrate

    with Environment() as environment:
        _migrate(environment.settings)
        config = migrate.alembic_config(environment.settings.database_url)
        command.revision(config, message=args.message, autogenerate=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
