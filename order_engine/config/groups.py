"""The concerns the configuration table groups the settings under, in the table's order."""

from __future__ import annotations

from order_engine.config.options import Group

SERVERS = Group(
    "Servers",
    "PostgreSQL, Redis and the Celery broker. With DATABASE_URL and REDIS_URL unset, `make run` "
    "(`order-engine run`) starts an embedded PostgreSQL and Redis under `.state/`.",
)
API = Group(
    "API",
    "The HTTP and WebSocket server and the addresses it answers for. A request body is read only "
    "once the request's key is checked, and only for so long: a client that sends it slowly holds "
    "its connection BODY_TIMEOUT_S at most, and one address at most MAX_BODIES_PER_ADDRESS such "
    "connections per API process.",
)
ACCESS = Group(
    "Per-account limits",
    "Each API key belongs to an account; these bound what one account can hold or send. The first "
    "five are every account's defaults: `order-engine accounts set-limits` gives an account its "
    "own (docs/api.md). The last two bound the failed authentications of one client address.",
)
CHAIN = Group("The chain", "The Solana JSON-RPC endpoint, the engine's wallet and its timings.")
EXECUTION = Group(
    "Execution and retries",
    "Start-up refuses timings under which a task could run twice: CONFIRM_TIMEOUT_S + 4 × "
    "RPC_TIMEOUT_S < TASK_TIME_LIMIT_S < ORDER_LEASE_S, ORDER_LEASE_S + "
    "ORDER_RETRY_BACKOFF_MAX_S < BROKER_VISIBILITY_TIMEOUT_S, and ORDER_RETRY_BACKOFF_S ≤ "
    "ORDER_RETRY_BACKOFF_MAX_S.",
)
LANDING = Group(
    "Landing",
    'What a swap bids and how it is sent (docs/design.md, "Landing on a contested chain"): an '
    "order's own `priorityFee`, `maxFeeLamports` and `mevProtection` take precedence.",
)
TRIGGERS = Group(
    "Orders that wait",
    "Limit, sniper, stop, OCO and trailing-stop orders: they wait for a price or a pool.",
)
PROCESSES = Group(
    "Processes",
    "How many processes, threads and connections each part runs with, and where they keep "
    "their files.",
)
OBSERVABILITY = Group("Logs and monitoring")
LOCALNET = Group(
    "The localnet",
    "The simulated validator's own settings (`order-engine localnet serve`); of these the engine "
    "reads LOCALNET_PORT and DEX_SEED only.",
)
GROUPS = (
    SERVERS,
    API,
    ACCESS,
    CHAIN,
    LANDING,
    EXECUTION,
    TRIGGERS,
    PROCESSES,
    OBSERVABILITY,
    LOCALNET,
)
