"""Where a command's PostgreSQL and Redis are: the URLs in the environment when set, else the
embedded servers under `.state/` (started or adopted here and stopped on every exit path)."""

from __future__ import annotations

import logging
import os
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from order_engine.config import ConfigError, Settings, _process_environment
from order_engine.ops import embedded

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from order_engine.services.access import AccessService

log = logging.getLogger("order_engine.ops.cli")

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


def _migrate(settings: Settings) -> bool:
    """Upgrade the database to the migrations' head if it is behind; whether it was."""
    from order_engine.ops import migrate

    if not migrate.pending(settings.database_url):
        log.info("database already at the migrations' head")
        return False
    migrate.upgrade(settings.database_url)
    log.info("database migrated to head")
    return True


def announce(url: str) -> None:
    """Say on stderr which server a command talks to (its password hidden): stdout stays what
    the command was asked for."""
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        host = parts.netloc.rpartition("@")[2]
        user = urllib.parse.unquote(parts.username or "")
        parts = parts._replace(netloc=f"{user}:***@{host}")
    print(f"→ {urllib.parse.urlunsplit(parts)}", file=sys.stderr, flush=True)


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
        announce(environment.settings.database_url)
        _migrate(environment.settings)
        engine, service = _access_service(environment.settings)
        try:
            yield environment.settings, service
        finally:
            engine.dispose()
