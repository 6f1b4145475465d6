"""One Redis connection pool per process, shared by every request and task."""

from __future__ import annotations

import redis
from flask import Flask, current_app

from order_engine.config import Settings

_clients: dict[str, redis.Redis] = {}


def make_redis(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=25,
    )


def get_redis(app: Flask | None = None) -> redis.Redis:
    settings = (app or current_app).config["SETTINGS"]
    client = _clients.get(settings.redis_url)
    if client is None:
        client = _clients[settings.redis_url] = make_redis(settings)
    return client


def reset_redis_clients() -> None:
    """Forget pools inherited across fork."""
    _clients.clear()
