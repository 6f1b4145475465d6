"""One Redis connection pool per process (held by `process.PROCESS`), shared by every request
and task.

Every call is bounded: a Redis that stops answering (frozen, half-open connection, network
partition) costs a caller at most `REDIS_CALL_BOUND_S`, never a hang. redis-py's default
retry policy (10 attempts in 8.x) would multiply each timeout; we retry once, at once, which
covers a pooled connection that died with a restarted server.
"""

from __future__ import annotations

import redis
from flask import Flask, current_app
from redis.backoff import ConstantBackoff
from redis.retry import Retry

from order_engine.config import Settings
from order_engine.infra.process import PROCESS

SOCKET_TIMEOUT_S = 1.5
SOCKET_CONNECT_TIMEOUT_S = 1.0
RETRIES = 1
# The longest one call can take: every attempt may connect and then wait for its answer.
REDIS_CALL_BOUND_S = (RETRIES + 1) * (SOCKET_CONNECT_TIMEOUT_S + SOCKET_TIMEOUT_S)


def make_redis(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_CONNECT_TIMEOUT_S,
        socket_keepalive=True,
        health_check_interval=25,
        retry=Retry(ConstantBackoff(0), RETRIES),
    )


def get_redis(app: Flask | None = None) -> redis.Redis:
    settings = (app or current_app).config["SETTINGS"]
    return PROCESS.get("redis", settings.redis_url, lambda: make_redis(settings))
