"""Benchmark-only baseline: the least an order intake can do, to measure the real one against.

`POST /bench/baseline` does one INSERT of a fixed order row and one Celery send, and nothing
else (no validation, no event row, no publish). DESIGN §7 states the intake target as a ratio
against this endpoint run in the same benchmark, because absolute rates drift on a shared
2-core machine. It exists only when `BENCH_ENDPOINTS=1`, so a deployment never exposes it.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import cast

from flask import Blueprint, Flask, Response, current_app, jsonify
from sqlalchemy import Table, insert

from order_engine.infra.db import get_engine
from order_engine.infra.queues import NOOP_TASK
from order_engine.models import Order

bp = Blueprint("bench", __name__, url_prefix="/bench")

BASELINE_AMOUNT_IN = Decimal("0.01")


def register(app: Flask) -> None:
    """Register the baseline endpoint, only when the environment asks for it."""
    if app.config["SETTINGS"].bench_endpoints:
        app.register_blueprint(bp)


@bp.post("/baseline")
def baseline() -> tuple[Response, int]:
    """One INSERT (SQLAlchemy Core) and one Celery send; 202 like the real intake."""
    order_id = uuid.uuid4()
    with get_engine().begin() as conn:
        conn.execute(
            insert(cast(Table, Order.__table__)).values(
                id=order_id,
                type="market",
                status="pending",
                token_in="SOL",
                token_out="USDC",
                amount_in=BASELINE_AMOUNT_IN,
                slippage_bps=50,
                last_seq=0,
                attempts=0,
                deliveries=0,
            )
        )
    current_app.extensions["celery"].send_task(NOOP_TASK, kwargs={"order_id": str(order_id)})
    return jsonify(orderId=str(order_id), status="pending"), 202
