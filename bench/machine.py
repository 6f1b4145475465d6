"""What the figures depend on: the machine, the versions, and the servers' own versions."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

import psutil
import redis
from sqlalchemy import text
from sqlalchemy.engine import Engine

PACKAGES = (
    "celery",
    "kombu",
    "flask",
    "flask-sock",
    "simple-websocket",
    "sqlalchemy",
    "redis",
    "psycopg",
    "gunicorn",
    "marshmallow",
    "wsproto",
    "psutil",
    "matplotlib",
)


def describe(engine: Engine | None, redis_url: str | None) -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(memory.total / 2**30, 1),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in PACKAGES},
        "postgresql": _postgres_version(engine),
        "redis_server": _redis_version(redis_url),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _postgres_version(engine: Engine | None) -> str | None:
    if engine is None:
        return None
    with engine.connect() as conn:
        return conn.execute(text("SHOW server_version")).scalar_one()


def _redis_version(url: str | None) -> str | None:
    if not url:
        return None
    return redis.Redis.from_url(url).info("server").get("redis_version")
