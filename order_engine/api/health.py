"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from order_engine.errors import envelope
from order_engine.infra.db import get_engine
from order_engine.infra.redis_client import get_redis

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and serving requests.
    ---
    get:
      summary: Process is up
      security: []
      responses:
        "200": {description: ok}
    """
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when PostgreSQL and Redis both answer; 503 names whichever does not.
    ---
    get:
      summary: PostgreSQL and Redis reachable
      security: []
      responses:
        "200": {description: ready}
        "503": Unavailable
    """
    checks = {"postgres": _check_postgres(), "redis": _check_redis()}
    down = sorted(name for name, error in checks.items() if error)
    body = {name: ("ok" if not error else f"down: {error}") for name, error in checks.items()}
    if not down:
        return jsonify(status="ready", checks=body), 200
    return jsonify(
        envelope(
            503,
            "Service Unavailable",
            f"Not ready: {', '.join(down)} unreachable",
            {name: [body[name]] for name in down},
        )
    ), 503


def _check_postgres() -> str | None:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return type(exc).__name__
    return None


def _check_redis() -> str | None:
    try:
        get_redis().ping()
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__
    return None
