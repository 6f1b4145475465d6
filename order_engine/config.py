"""Configuration, read once from the environment (and a `.env` file) into typed settings.

Every knob the operators and the test harnesses rely on is named here, with its default. A value
that does not parse stops start-up with a message naming the variable, so a typo in a deployment
never silently falls back to a default.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("ORDER_ENGINE_STATE_DIR", PROJECT_ROOT / ".state"))
# Generated on first use when WALLET_KEYPAIR is unset (chain/wallet.py): a localnet key only.
DEV_WALLET_PATH = STATE_DIR / "dev-wallet.json"


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class LatencyRange:
    """A simulated latency in milliseconds: a fixed value or a uniform `min-max` range."""

    low_ms: int
    high_ms: int

    def sample_ms(self, rng: random.Random) -> int:
        return rng.randint(self.low_ms, self.high_ms)

    def __str__(self) -> str:
        if self.low_ms == self.high_ms:
            return str(self.low_ms)
        return f"{self.low_ms}-{self.high_ms}"


def _parse_url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in schemes:
        raise ConfigError(f"{name} must be a URL with scheme {' or '.join(schemes)}, got {raw!r}")
    if not (parts.hostname or "host=" in parts.query or parts.path):
        raise ConfigError(f"{name} has no host: {raw!r}")
    return raw


def _parse_int(name: str, raw: str, low: int, high: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    return value


def _parse_rate(name: str, raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ConfigError(f"{name} must be a number between 0 and 1, got {raw!r}") from None
    if not value.is_finite() or not Decimal(0) <= value <= Decimal(1):
        raise ConfigError(f"{name} must be a number between 0 and 1, got {raw!r}")
    return value


def _parse_latency(name: str, raw: str) -> LatencyRange:
    text = raw.strip()
    low_text, sep, high_text = text.partition("-")
    try:
        low = int(low_text)
        high = int(high_text) if sep else low
    except ValueError:
        raise ConfigError(
            f"{name} must be milliseconds as a number or a 'min-max' range, got {raw!r}"
        ) from None
    if low < 0 or high < low:
        raise ConfigError(f"{name} must be non-negative with min <= max, got {raw!r}")
    return LatencyRange(low, high)


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Typed settings; build with `Settings.from_env()`."""

    database_url: str
    redis_url: str
    celery_broker_url: str
    port: int
    log_level: str
    dex_seed: int
    solana_rpc_url: str
    localnet_port: int
    wallet_keypair: str
    rpc_timeout_s: int
    confirm_timeout_s: int
    rebroadcast_interval_s: int
    compute_unit_price_micro_lamports: int
    order_max_attempts: int
    order_max_deliveries: int
    retry_backoff_s: int
    retry_backoff_max_s: int
    task_time_limit_s: int
    order_lease_s: int
    visibility_timeout_s: int
    reconcile_interval_s: int
    stale_pending_after_s: int
    active_order_ttl_s: int
    ws_ping_interval_s: int
    max_body_bytes: int
    worker_pool: str
    worker_concurrency: int
    api_workers: int
    api_worker_class: str
    api_threads: int
    api_worker_connections: int
    db_pool_size: int
    db_max_overflow: int
    sql_echo: bool
    task_events: bool
    # Limit and sniper orders (DESIGN §10): the latest `expiresAt` accepted, and how often the
    # trigger engine evaluates the waiting orders (about one slot).
    limit_max_horizon_s: int = 30 * 24 * 3600
    trigger_interval_ms: int = 500
    # Access (DESIGN §9).
    public_base_url: str = "http://localhost:8000"
    ws_allowed_origins: tuple[str, ...] = ()
    rate_limit_per_s: float = 20.0
    rate_limit_burst: int = 100
    max_orders_in_flight: int = 200
    max_websockets: int = 200
    stream_ticket_ttl_s: int = 30
    api_key_cache_s: int = 5
    # Observability (DESIGN §11): `json` lines for production, readable `text` in development.
    log_format: str = "text"
    log_control_tasks: bool = False
    # Flower (`order-engine flower`): loopback only unless it has credentials (cli.py).
    flower_port: int = 5555
    flower_address: str = ""
    flower_basic_auth: str = field(default="", repr=False)

    @property
    def public_ws_url(self) -> str:
        """The public base URL with the WebSocket scheme (ws:// or wss://)."""
        return "ws" + self.public_base_url.removeprefix("http")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from `environ` (default: `.env` overlaid by the process environment)."""
        env = dict(environ) if environ is not None else _process_environment()
        get = env.get
        database_url = get("DATABASE_URL") or ""
        redis_url = get("REDIS_URL") or ""
        if not database_url:
            raise ConfigError(
                "DATABASE_URL is not set; `make run` starts an embedded PostgreSQL when it is unset"
            )
        if not redis_url:
            raise ConfigError(
                "REDIS_URL is not set; `make run` starts an embedded Redis when it is unset"
            )
        localnet_port = _parse_int("LOCALNET_PORT", get("LOCALNET_PORT", "8899"), 1, 65535)
        port = get("PORT", "8000")
        public_base_url = _parse_base_url(
            "PUBLIC_BASE_URL", get("PUBLIC_BASE_URL") or f"http://localhost:{port.strip()}"
        )
        return cls(
            database_url=_normalise_database_url(
                _parse_url("DATABASE_URL", database_url, ("postgresql", "postgresql+psycopg"))
            ),
            redis_url=_parse_url("REDIS_URL", redis_url, ("redis", "rediss", "unix")),
            celery_broker_url=_parse_url(
                "CELERY_BROKER_URL",
                get("CELERY_BROKER_URL") or redis_url,
                ("redis", "rediss", "unix", "amqp", "amqps", "pyamqp", "redis+socket"),
            ),
            port=_parse_int("PORT", get("PORT", "8000"), 1, 65535),
            log_level=_parse_log_level(get("LOG_LEVEL", "INFO")),
            log_format=_parse_choice("LOG_FORMAT", get("LOG_FORMAT", "text"), ("text", "json")),
            log_control_tasks=_parse_bool("LOG_CONTROL_TASKS", get("LOG_CONTROL_TASKS", "false")),
            dex_seed=_parse_int("DEX_SEED", get("DEX_SEED", "7"), 0),
            solana_rpc_url=_parse_url(
                "SOLANA_RPC_URL",
                get("SOLANA_RPC_URL") or f"http://127.0.0.1:{localnet_port}",
                ("http", "https"),
            ),
            localnet_port=localnet_port,
            wallet_keypair=get("WALLET_KEYPAIR") or str(DEV_WALLET_PATH),
            rpc_timeout_s=_parse_int("RPC_TIMEOUT_S", get("RPC_TIMEOUT_S", "5"), 1, 60),
            confirm_timeout_s=_parse_int(
                "CONFIRM_TIMEOUT_S", get("CONFIRM_TIMEOUT_S", "75"), 1, 600
            ),
            rebroadcast_interval_s=_parse_int(
                "REBROADCAST_INTERVAL_S", get("REBROADCAST_INTERVAL_S", "3"), 0, 60
            ),
            compute_unit_price_micro_lamports=_parse_int(
                "COMPUTE_UNIT_PRICE_MICRO_LAMPORTS",
                get("COMPUTE_UNIT_PRICE_MICRO_LAMPORTS", "25000"),
                0,
                10**12,
            ),
            order_max_attempts=_parse_int(
                "ORDER_MAX_ATTEMPTS", get("ORDER_MAX_ATTEMPTS", "3"), 1, 10
            ),
            order_max_deliveries=_parse_int(
                "ORDER_MAX_DELIVERIES", get("ORDER_MAX_DELIVERIES", "6"), 1, 100
            ),
            retry_backoff_s=_parse_int(
                "ORDER_RETRY_BACKOFF_S", get("ORDER_RETRY_BACKOFF_S", "1"), 0
            ),
            retry_backoff_max_s=_parse_int(
                "ORDER_RETRY_BACKOFF_MAX_S", get("ORDER_RETRY_BACKOFF_MAX_S", "8"), 0
            ),
            task_time_limit_s=_parse_int("TASK_TIME_LIMIT_S", get("TASK_TIME_LIMIT_S", "100"), 1),
            order_lease_s=_parse_int("ORDER_LEASE_S", get("ORDER_LEASE_S", "120"), 1),
            visibility_timeout_s=_parse_int(
                "BROKER_VISIBILITY_TIMEOUT_S", get("BROKER_VISIBILITY_TIMEOUT_S", "300"), 1
            ),
            reconcile_interval_s=_parse_int(
                "RECONCILE_INTERVAL_S", get("RECONCILE_INTERVAL_S", "5"), 1
            ),
            stale_pending_after_s=_parse_int(
                "STALE_PENDING_AFTER_S", get("STALE_PENDING_AFTER_S", "30"), 1
            ),
            active_order_ttl_s=_parse_int(
                "ACTIVE_ORDER_TTL_S", get("ACTIVE_ORDER_TTL_S", "600"), 1
            ),
            ws_ping_interval_s=_parse_int("WS_PING_INTERVAL_S", get("WS_PING_INTERVAL_S", "25"), 0),
            max_body_bytes=_parse_int("MAX_BODY_BYTES", get("MAX_BODY_BYTES", "16384"), 256),
            worker_pool=_parse_choice(
                "WORKER_POOL", get("WORKER_POOL", "gevent"), ("gevent", "threads", "prefork")
            ),
            worker_concurrency=_parse_int(
                "WORKER_CONCURRENCY", get("WORKER_CONCURRENCY", "1000"), 1, 10_000
            ),
            # One gevent process per host by default: on the reference machine (2 cores shared
            # with the worker, PostgreSQL, Redis and the localnet) a second one cost 13 % more
            # API CPU per order and 20 % of the order rate (smaller group-commit batches, every
            # event parsed by each process's hub); the API needs about half a core at 100
            # orders/s. Raise it where the API has cores of its own.
            api_workers=_parse_int("WEB_CONCURRENCY", get("WEB_CONCURRENCY", "1"), 1, 64),
            api_worker_class=_parse_choice(
                "API_WORKER_CLASS", get("API_WORKER_CLASS", "gevent"), ("gevent", "gthread")
            ),
            api_threads=_parse_int("API_THREADS", get("API_THREADS", "64"), 1, 10_000),
            api_worker_connections=_parse_int(
                "API_WORKER_CONNECTIONS", get("API_WORKER_CONNECTIONS", "2500"), 1, 100_000
            ),
            db_pool_size=_parse_int("DB_POOL_SIZE", get("DB_POOL_SIZE", "20"), 1, 1_000),
            db_max_overflow=_parse_int("DB_MAX_OVERFLOW", get("DB_MAX_OVERFLOW", "0"), 0, 1_000),
            sql_echo=_parse_bool("SQL_ECHO", get("SQL_ECHO", "false")),
            task_events=_parse_bool("TASK_EVENTS", get("TASK_EVENTS", "false")),
            limit_max_horizon_s=_parse_int(
                "LIMIT_MAX_HORIZON_S", get("LIMIT_MAX_HORIZON_S", str(30 * 24 * 3600)), 1
            ),
            trigger_interval_ms=_parse_int(
                "TRIGGER_INTERVAL_MS", get("TRIGGER_INTERVAL_MS", "500"), 50, 60_000
            ),
            public_base_url=public_base_url,
            ws_allowed_origins=_parse_origins(
                "WS_ALLOWED_ORIGINS", get("WS_ALLOWED_ORIGINS"), public_base_url
            ),
            rate_limit_per_s=float(
                _parse_rate_per_s("RATE_LIMIT_PER_S", get("RATE_LIMIT_PER_S", "20"))
            ),
            rate_limit_burst=_parse_int("RATE_LIMIT_BURST", get("RATE_LIMIT_BURST", "100"), 1),
            max_orders_in_flight=_parse_int(
                "MAX_ORDERS_IN_FLIGHT", get("MAX_ORDERS_IN_FLIGHT", "200"), 0
            ),
            max_websockets=_parse_int("MAX_WEBSOCKETS", get("MAX_WEBSOCKETS", "200"), 1),
            stream_ticket_ttl_s=_parse_int(
                "STREAM_TICKET_TTL_S", get("STREAM_TICKET_TTL_S", "30"), 1, 600
            ),
            api_key_cache_s=_parse_int("API_KEY_CACHE_S", get("API_KEY_CACHE_S", "5"), 0, 300),
            flower_port=_parse_int("FLOWER_PORT", get("FLOWER_PORT", "5555"), 1, 65535),
            flower_address=get("FLOWER_ADDRESS") or "",
            flower_basic_auth=get("FLOWER_BASIC_AUTH") or "",
        ).checked()

    @property
    def worker_stop_bound_s(self) -> int:
        """How long a worker may take to stop after a stop request: the task time limit, plus
        a margin for the soft shutdown and for restoring unacknowledged messages. Past it the
        worker stops itself hard (workers/celery_app.py)."""
        return self.task_time_limit_s + 10

    def checked(self) -> Settings:
        """Refuse timings under which a message could be redelivered while its task still runs.

        Redis redelivers an unacknowledged message after the visibility timeout, so a task that
        can still be running (time limit) or waiting on its retry countdown by then would run
        twice. The database lease must outlive the task and expire before redelivery, so the
        redelivered task finds it free (research/reliability.md §1.2, §2.2).
        """
        if self.retry_backoff_max_s < self.retry_backoff_s:
            raise ConfigError("ORDER_RETRY_BACKOFF_MAX_S must be >= ORDER_RETRY_BACKOFF_S")
        if not self.task_time_limit_s < self.order_lease_s:
            raise ConfigError(
                f"ORDER_LEASE_S ({self.order_lease_s}) must exceed "
                f"TASK_TIME_LIMIT_S ({self.task_time_limit_s})"
            )
        # The longest wait inside a task: the confirmation of its transaction, plus the RPC
        # calls around it (blockhash, send, accounts, balances), each bounded by its timeout.
        longest_wait_s = self.confirm_timeout_s + 4 * self.rpc_timeout_s
        if not longest_wait_s < self.task_time_limit_s:
            raise ConfigError(
                f"TASK_TIME_LIMIT_S ({self.task_time_limit_s}) must exceed CONFIRM_TIMEOUT_S + "
                f"4 × RPC_TIMEOUT_S ({longest_wait_s}), the longest a task waits on the chain"
            )
        longest_hold = self.order_lease_s + self.retry_backoff_max_s
        if not longest_hold < self.visibility_timeout_s:
            raise ConfigError(
                f"BROKER_VISIBILITY_TIMEOUT_S ({self.visibility_timeout_s}) must exceed "
                f"ORDER_LEASE_S + ORDER_RETRY_BACKOFF_MAX_S ({longest_hold})"
            )
        return self


def _parse_base_url(name: str, raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ConfigError(
            f"{name} must be an http(s) URL such as https://api.example.com, got {raw!r}"
        )
    return raw.strip().rstrip("/")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _parse_origins(name: str, raw: str | None, public_base_url: str) -> tuple[str, ...]:
    """Origins allowed to open WebSockets: the public base URL's own by default; `*` any."""
    if raw is None or not raw.strip():
        return (_origin(public_base_url),)
    origins = [o.strip() for o in raw.split(",") if o.strip()]
    for origin in origins:
        if origin != "*" and _origin(origin) != origin.lower().rstrip("/"):
            raise ConfigError(
                f"{name} must list origins like https://app.example.com, got {origin!r}"
            )
    return tuple(o if o == "*" else o.lower().rstrip("/") for o in origins)


def _parse_rate_per_s(name: str, raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ConfigError(f"{name} must be a positive number, got {raw!r}") from None
    if not value.is_finite() or not Decimal("0.01") <= value <= Decimal(1_000_000):
        raise ConfigError(f"{name} must be between 0.01 and 1000000, got {raw!r}")
    return value


def _parse_choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _parse_log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return level


def _normalise_database_url(url: str) -> str:
    """Always talk to PostgreSQL through psycopg 3, whichever spelling the operator used."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def startup_log_format() -> str:
    """The log format for a command's first lines, before its settings are read (a bad
    LOG_FORMAT is then refused by `Settings.from_env`, in the format chosen here)."""
    return "json" if os.environ.get("LOG_FORMAT", "").strip().lower() == "json" else "text"


def _process_environment() -> dict[str, str]:
    dotenv_file = PROJECT_ROOT / ".env"
    values = {k: v for k, v in dotenv_values(dotenv_file).items() if v is not None}
    values.update(os.environ)
    return values
