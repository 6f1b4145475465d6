"""The benchmark's WSGI app, served by the product's gunicorn command line in place of
`order_engine.wsgi:app`: the engine's own app with `POST /bench/baseline` added outside `/api/`
(no key checked), the least an order intake can do (one INSERT of a fixed order row, one Celery
send of `bench.noop`). The intake target is a ratio against it in the same run, because absolute
rates drift on a shared machine.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import cast

from flask import Blueprint, Flask, Response, current_app, jsonify
from sqlalchemy import Table, insert

from bench import NOOP_TASK

baseline_bp = Blueprint("bench", __name__, url_prefix="/bench")
# The row the baseline inserts, a fixed market order.
ORDER_ROW = {"type": "market", "status": "pending", "token_in": "SOL", "token_out": "USDC"}
ORDER_ROW |= {"amount_in": Decimal("0.01"), "slippage_bps": 50, "last_seq": 0, "attempts": 0}
ORDER_ROW["deliveries"] = 0


@baseline_bp.post("/baseline")
def baseline() -> tuple[Response, int]:
    """One INSERT and one Celery send; 202 like the real intake."""
    from order_engine.infra.db import get_engine
    from order_engine.models import Order

    order_id = uuid.uuid4()
    with get_engine().begin() as conn:
        conn.execute(insert(cast(Table, Order.__table__)).values(id=order_id, **ORDER_ROW))
    current_app.extensions["celery"].send_task(NOOP_TASK, kwargs={"order_id": str(order_id)})
    return jsonify(orderId=str(order_id), status="pending"), 202


def create() -> Flask:
    """The engine's app plus the bench's route."""
    from order_engine.wsgi import app

    app.register_blueprint(baseline_bp)
    return app
