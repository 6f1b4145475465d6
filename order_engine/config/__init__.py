"""Configuration, read once from the environment (and a `.env` file) into typed settings.

Every knob the operators and the test harnesses rely on is declared once, as a field of
`Settings` (here, or in a base class of it by concern: `triggers.py`): its variable, parser,
default and what it does (`options.py` says how; the localnet's own are in
order_engine/localnet/config.py). The table in docs/configuration.md and
`.env.example` are generated from these declarations (`make config-docs`). A value that does not
parse stops start-up with a message naming the variable, so a typo in a deployment never
silently falls back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from string import Template

from order_engine.config.checks import check_timings
from order_engine.config.environment import (
    DEV_WALLET_PATH,
    PROCESS_OPTIONS,
    PROJECT_ROOT,
    STATE_DIR,
    process_environment,
    startup_log_format,
)
from order_engine.config.groups import (
    ACCESS,
    API,
    CHAIN,
    EXECUTION,
    GROUPS,
    LOCALNET,
    OBSERVABILITY,
    PROCESSES,
    SERVERS,
)
from order_engine.config.landing import LandingSettings
from order_engine.config.options import Option, Required, option, read
from order_engine.config.parsers import (
    ConfigError,
    LatencyRange,
    base_url,
    choice,
    log_level,
    origin_of,
    origins,
    per_second,
    postgresql_url,
    switch,
    text,
    url,
    whole,
)
from order_engine.config.triggers import TriggerSettings

__all__ = [
    "DEV_WALLET_PATH",
    "DEX_SEED",
    "GROUPS",
    "LOCALNET",
    "LOCALNET_PORT",
    "PROCESS_OPTIONS",
    "PROJECT_ROOT",
    "STATE_DIR",
    "ConfigError",
    "LatencyRange",
    "Settings",
    "_process_environment",
    "process_environment",
    "startup_log_format",
]

# The name the process commands (ops/, app.py) and bench/ import.
_process_environment = process_environment

# Read by the engine and by the localnet (order_engine/localnet/config.py).
LOCALNET_PORT = Option(
    "LOCALNET_PORT",
    whole(1, 65535),
    "8899",  # solana-test-validator's RPC port
    LOCALNET,
    "the localnet's port; the engine's default SOLANA_RPC_URL follows it",
)
DEX_SEED = Option(
    "DEX_SEED",
    whole(0),
    "7",
    LOCALNET,
    "seed of the simulated market (also seeds the engine's retry jitter)",
)


@dataclass(frozen=True, kw_only=True)
class Settings(TriggerSettings, LandingSettings):
    """Typed settings; build with `Settings.from_env()`. Declaration order is reading order: a
    default that names another setting comes after it."""

    database_url: str = option(
        "DATABASE_URL",
        postgresql_url(),
        Required("`make run` starts an embedded PostgreSQL when it is unset"),
        SERVERS,
        "PostgreSQL URL (`postgresql://…`; psycopg 3 is always used)",
        shown="embedded",
        example="postgresql://postgres@127.0.0.1:5432/order_engine",
    )
    redis_url: str = option(
        "REDIS_URL",
        url("redis", "rediss", "unix"),
        Required("`make run` starts an embedded Redis when it is unset"),
        SERVERS,
        "Redis for live order state, pub/sub and the per-account limits",
        shown="embedded",
        example="redis://127.0.0.1:6379/0",
    )
    celery_broker_url: str = option(
        "CELERY_BROKER_URL",
        url("redis", "rediss", "unix", "amqp", "amqps", "pyamqp", "redis+socket"),
        Template("${REDIS_URL}"),
        SERVERS,
        "Celery broker: Redis, or `amqp://…` for RabbitMQ",
        example="amqp://guest:guest@127.0.0.1:5672//",
    )
    port: int = option("PORT", whole(1, 65535), "8000", API, "the API's port")
    public_base_url: str = option(
        "PUBLIC_BASE_URL",
        base_url(),
        Template("http://localhost:${PORT}"),
        API,
        "the API's public address: the `links` in answers are built from it, never from the "
        "`Host` header",
        example="https://api.example.com",
    )
    ws_allowed_origins: tuple[str, ...] = option(
        "WS_ALLOWED_ORIGINS",
        origins(),
        lambda earlier: origin_of(str(earlier["PUBLIC_BASE_URL"])),
        API,
        "other origins whose pages may open WebSockets (`*`: any); a page of the origin the "
        "request was sent to passes, and so do clients that send no `Origin` (not browsers)",
        shown="the origin of PUBLIC_BASE_URL",
        example="https://app.example.com,https://admin.example.com",
    )
    ws_ping_interval_s: int = option(
        "WS_PING_INTERVAL_S",
        whole(0),
        "25",
        API,
        "seconds between the server's pings on an idle WebSocket (0: none)",
    )
    max_body_bytes: int = option(
        "MAX_BODY_BYTES",
        whole(256),
        "16384",
        API,
        "largest accepted request body or WebSocket message, in bytes",
    )
    body_timeout_s: int = option(
        "BODY_TIMEOUT_S", whole(1, 600), "10", API, "seconds a request body may take (then 408)"
    )
    max_bodies_per_address: int = option(
        "MAX_BODIES_PER_ADDRESS", whole(1), "8", API, "bodies one address may send at once (429)"
    )
    rate_limit_per_s: float = option(
        "RATE_LIMIT_PER_S", per_second(), "20", ACCESS, "sustained requests per second"
    )
    rate_limit_burst: int = option(
        "RATE_LIMIT_BURST", whole(1), "100", ACCESS, "requests allowed at once above that rate"
    )
    max_orders_in_flight: int = option(
        "MAX_ORDERS_IN_FLIGHT",
        whole(0),
        "200",
        ACCESS,
        "orders not yet confirmed, failed or cancelled, waiting ones apart (market orders and "
        "triggered orders of the other types; 0: no cap, and no count per submission)",
    )
    max_waiting_orders: int = option(
        "MAX_WAITING_ORDERS",
        whole(0),
        "1000",
        ACCESS,
        "orders waiting for their trigger (limit, sniper, stop, oco, trailing_stop; 0: no cap, "
        "and no count per submission)",
    )
    max_websockets: int = option("MAX_WEBSOCKETS", whole(1), "200", ACCESS, "open WebSockets")
    stream_ticket_ttl_s: int = option(
        "STREAM_TICKET_TTL_S",
        whole(1, 600),
        "30",
        ACCESS,
        "seconds a stream ticket stays usable (once)",
    )
    api_key_cache_s: int = option(
        "API_KEY_CACHE_S",
        whole(0, 300),
        "5",
        ACCESS,
        "seconds an API process trusts a key it checked: a revocation takes at most this long",
    )
    auth_failure_limit: int = option(
        "AUTH_FAILURE_LIMIT",
        whole(0),
        "20",
        ACCESS,
        "failed authentications (bad keys, bad stream tickets) one client address may make per "
        "AUTH_FAILURE_WINDOW_S; past them its keys and tickets get 429 until the window ends (0: "
        "no limit). The address is the peer's: behind a proxy, every client shares the proxy's",
    )
    auth_failure_window_s: int = option(
        "AUTH_FAILURE_WINDOW_S",
        whole(1, 86_400),
        "60",
        ACCESS,
        "seconds of the window AUTH_FAILURE_LIMIT counts in, from an address's first failure",
    )
    localnet_port: int = LOCALNET_PORT.field()
    dex_seed: int = DEX_SEED.field()
    solana_rpc_url: str = option(
        "SOLANA_RPC_URL",
        url("http", "https"),
        Template("http://127.0.0.1:${LOCALNET_PORT}"),
        CHAIN,
        "the chain's JSON-RPC endpoint; when it is set, `make run` starts no localnet",
        example="http://127.0.0.1:8899",
    )
    wallet_keypair: str = option(
        "WALLET_KEYPAIR",
        text(),
        str(DEV_WALLET_PATH),
        CHAIN,
        "the engine's keypair: a Solana CLI keypair file or a base58 secret key",
        shown="`.state/dev-wallet.json`, generated on first use",
        example="/path/to/keypair.json",
    )
    rpc_timeout_s: int = option(
        "RPC_TIMEOUT_S", whole(1, 60), "5", CHAIN, "seconds one JSON-RPC call may take"
    )
    confirm_timeout_s: int = option(
        "CONFIRM_TIMEOUT_S",
        whole(1, 600),
        "75",
        CHAIN,
        "the longest a task waits for its transaction's confirmation, in seconds (it stops "
        "earlier once the blockhash has expired, ~60 s after the transaction was built)",
    )
    rebroadcast_interval_s: int = option(
        "REBROADCAST_INTERVAL_S",
        whole(0, 60),
        "3",
        CHAIN,
        "while a task waits, it sends the same signed transaction again this often, in "
        "seconds, the first time once it is later than the process's recent landings (at "
        "most twice this; 0: never)",
    )
    order_max_attempts: int = option(
        "ORDER_MAX_ATTEMPTS",
        whole(1, 10),
        "3",
        EXECUTION,
        "attempts in total per order, not retries (Celery's `max_retries` is one less)",
    )
    order_max_deliveries: int = option(
        "ORDER_MAX_DELIVERIES",
        whole(1, 100),
        "6",
        EXECUTION,
        "deliveries to workers before an order that keeps killing them fails",
    )
    retry_backoff_s: int = option(
        "ORDER_RETRY_BACKOFF_S",
        whole(0),
        "1",
        EXECUTION,
        "seconds before the first retry, doubling with each retry, with jitter",
    )
    retry_backoff_max_s: int = option(
        "ORDER_RETRY_BACKOFF_MAX_S",
        whole(0),
        "8",
        EXECUTION,
        "the longest delay before a retry, in seconds",
    )
    task_time_limit_s: int = option(
        "TASK_TIME_LIMIT_S",
        whole(1),
        "100",
        EXECUTION,
        "seconds a task may run before its worker kills it",
    )
    order_lease_s: int = option(
        "ORDER_LEASE_S",
        whole(1),
        "120",
        EXECUTION,
        "seconds a worker's claim on an order lasts; another may take the order over after",
    )
    visibility_timeout_s: int = option(
        "BROKER_VISIBILITY_TIMEOUT_S",
        whole(1),
        "300",
        EXECUTION,
        "seconds after which a Redis broker redelivers a task its worker has not acknowledged",
    )
    reconcile_interval_s: int = option(
        "RECONCILE_INTERVAL_S", whole(1), "5", EXECUTION, "seconds between reconciler runs"
    )
    stale_pending_after_s: int = option(
        "STALE_PENDING_AFTER_S",
        whole(1),
        "30",
        EXECUTION,
        "seconds after which the reconciler counts a waiting order as lost (unless it is still "
        "queued behind a backlog)",
    )
    active_order_ttl_s: int = option(
        "ACTIVE_ORDER_TTL_S",
        whole(1, 86_400),
        "600",
        EXECUTION,
        "seconds an order's events stay in Redis after it ends (about 2 KB an order): a socket "
        "opened meanwhile replays from Redis, later ones from PostgreSQL",
    )
    # One gevent process per host by default: on the reference machine (2 cores shared with
    # the worker, PostgreSQL, Redis and the localnet) a second one cost 13 % more API CPU per
    # order and 20 % of the order rate (smaller group-commit batches, every event parsed by
    # each process's hub); the API needs about half a core at 100 orders/s. Raise it where the
    # API has cores of its own.
    api_workers: int = option(
        "WEB_CONCURRENCY",
        whole(1, 64),
        "1",
        PROCESSES,
        "gunicorn worker processes: one gevent process serves thousands of sockets and about 200 "
        "orders/s on a core; add one per core the API has to itself",
    )
    api_worker_class: str = option(
        "API_WORKER_CLASS",
        choice("gevent", "gthread"),
        "gevent",
        PROCESSES,
        "gunicorn worker class",
    )
    api_worker_connections: int = option(
        "API_WORKER_CONNECTIONS",
        whole(1, 100_000),
        "2500",
        PROCESSES,
        "connections per gevent API process (each open WebSocket holds one)",
    )
    api_threads: int = option(
        "API_THREADS",
        whole(1, 10_000),
        "64",
        PROCESSES,
        "threads per gthread API process: the most requests and sockets it serves at once",
    )
    worker_pool: str = option(
        "WORKER_POOL",
        choice("gevent", "threads", "prefork"),
        "gevent",
        PROCESSES,
        "Celery worker pool",
    )
    worker_concurrency: int = option(
        "WORKER_CONCURRENCY",
        whole(1, 10_000),
        "1000",
        PROCESSES,
        "task slots per worker: a task holds one until its order is confirmed, so slots ÷ "
        "seconds per order bounds the orders/s a worker completes",
    )
    db_pool_size: int = option(
        "DB_POOL_SIZE",
        whole(1, 1_000),
        "20",
        PROCESSES,
        "PostgreSQL connections per process, kept open; keep the total under the server's "
        "`max_connections`",
    )
    db_max_overflow: int = option(
        "DB_MAX_OVERFLOW",
        whole(0, 1_000),
        "0",
        PROCESSES,
        "connections a burst may open beyond the pool (0: it waits a moment for a pooled one "
        "instead, sparing PostgreSQL a backend fork per extra connection)",
    )
    task_events: bool = option(
        "TASK_EVENTS",
        switch(),
        "false",
        PROCESSES,
        "send Celery task events always (by default only while Flower runs, which turns them on)",
    )
    celery_overrides: bool = option(
        "CELERY_OVERRIDES",
        switch(),
        "true",
        PROCESSES,
        "replace the Celery and kombu internals listed in tasking/overrides/ for speed "
        "(checked at start-up); false: run on Celery and kombu as they come",
    )
    log_level: str = option(
        "LOG_LEVEL", log_level(), "INFO", OBSERVABILITY, "the least severe level logged"
    )
    log_format: str = option(
        "LOG_FORMAT",
        choice("text", "json"),
        "text",
        OBSERVABILITY,
        "`json`: one JSON object per line (production); `text`: readable lines (development)",
    )
    log_control_tasks: bool = option(
        "LOG_CONTROL_TASKS",
        switch(),
        "false",
        OBSERVABILITY,
        "keep Celery's lines about the scheduler's own tasks (trigger evaluation, reconciler: "
        "six a second); by default only what they did is logged",
    )
    sql_echo: bool = option(
        "SQL_ECHO", switch(), "false", OBSERVABILITY, "log every SQL statement (SQLAlchemy's echo)"
    )
    flower_port: int = option(
        "FLOWER_PORT", whole(1, 65535), "5555", OBSERVABILITY, "Flower's port"
    )
    flower_address: str = option(
        "FLOWER_ADDRESS",
        text(),
        "",
        OBSERVABILITY,
        "Flower's address; beyond loopback it is refused without FLOWER_BASIC_AUTH",
        shown="`127.0.0.1`; `0.0.0.0` with FLOWER_BASIC_AUTH",
        example="0.0.0.0",
    )
    flower_basic_auth: str = option(
        "FLOWER_BASIC_AUTH",
        text(),
        "",
        OBSERVABILITY,
        "`user:password` for Flower, which shows every order's task and its arguments",
        example="operator:change-me",
        secret=True,
    )

    @property
    def public_ws_url(self) -> str:
        """The public base URL with the WebSocket scheme (ws:// or wss://)."""
        return "ws" + self.public_base_url.removeprefix("http")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from `environ` (default: `.env` overlaid by the process environment)."""
        env = dict(environ) if environ is not None else process_environment()
        return read(cls, env).checked()

    @property
    def worker_stop_bound_s(self) -> int:
        """How long a worker may take to stop after a stop request: the task time limit, plus
        a margin for the soft shutdown and for restoring unacknowledged messages. Past it the
        worker stops itself hard (workers/celery_app.py)."""
        return self.task_time_limit_s + 10

    def checked(self) -> Settings:
        """These settings, once `check_timings` (config/checks.py) has found no contradiction."""
        check_timings(self)
        return self
