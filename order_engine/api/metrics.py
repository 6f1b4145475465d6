"""`GET /metrics` (Prometheus text format) and the intake latency measurement.

`/metrics` answers a request from this host (a loopback peer, not relayed by a proxy) without a
key, and anyone else only with an `admin` key (Bearer, or HTTP Basic with the key as the
password): it is never open without credentials beyond loopback.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, g, request
from sqlalchemy import text

from order_engine.api.access import operator_principal
from order_engine.infra import metrics
from order_engine.infra.db import get_session

bp = Blueprint("metrics", __name__)

INTAKE_ENDPOINT = "orders.execute_order"

# Ready orders nobody has picked up: not waiting for a price, not scheduled for later.
_OLDEST_READY_SQL = text(
    "SELECT min(coalesce(next_attempt_at, triggered_at, created_at)) FROM orders "
    "WHERE status = 'pending' AND NOT waiting "
    "AND coalesce(next_attempt_at, triggered_at, created_at) <= now()"
)


@bp.get("/metrics")
def serve_metrics() -> Response:
    """Every process's series, summed (multiprocess mode), plus the scrape-time gauges.
    ---
    get:
      summary: Prometheus metrics of every process of the host
      description: >-
        Open to requests from the host itself (loopback, not relayed by a
        proxy); anyone else needs a key with the `admin` scope (Bearer, or HTTP
        Basic with the key as the password). Series: see the README,
        Observability.
      security: []
      responses:
        "200":
          description: Prometheus text exposition format
          content:
            text/plain:
              schema: {type: string}
        "401": Unauthorized
        "403": Forbidden
    """
    operator_principal(loopback_is_enough=True)
    body, content_type = metrics.render(metrics.ScrapeCollector(broker_client(), _oldest_ready))
    return Response(body, content_type=content_type)


def _oldest_ready() -> datetime | None:
    session = get_session()
    with session.begin():
        return session.execute(_OLDEST_READY_SQL).scalar()


def broker_client() -> redis.Redis | None:
    """A client on the Celery broker when it is Redis (its queues are lists named after
    them), made once per process; None for another broker."""
    if "order_engine.metrics_broker" not in current_app.extensions:
        url = current_app.config["SETTINGS"].celery_broker_url
        client = (
            redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
            if url.startswith(("redis://", "rediss://", "unix://"))
            else None
        )
        current_app.extensions["order_engine.metrics_broker"] = client
    return current_app.extensions["order_engine.metrics_broker"]


def _start_intake_clock() -> None:
    if request.endpoint == INTAKE_ENDPOINT:
        g.intake_started = time.perf_counter()


def _observe_intake(response: Response) -> Response:
    started: Any = g.pop("intake_started", None)
    if started is not None:
        metrics.INTAKE_SECONDS.labels(str(response.status_code)).observe(
            time.perf_counter() - started
        )
    return response


def init_app(app: Flask) -> None:
    # Before the access guard, so that refused submissions (401, 429) are timed too.
    app.before_request(_start_intake_clock)
    app.after_request(_observe_intake)
    app.register_blueprint(bp)
