"""The benchmark's WSGI app, served by the product's gunicorn command line in place of
`order_engine.wsgi:app`: `create("project")` is the engine's own app with the routes below added
outside `/api/` (no key checked), `create("bare")` a plain Flask app with flask-sock and the
floor routes, to set the framework's own cost beside the project's (`python -m bench.floors`).

- `POST /bench/baseline`: the least an order intake can do (one INSERT of a fixed order row,
  one Celery send of `bench.noop`); the intake target is a ratio against it in the same run,
  because absolute rates drift on a shared machine.
- `POST /floor/noop`: 202 and a small body; `GET /floor/ws`: one event-shaped message, closed.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from flask import Blueprint, Flask, Response, current_app, jsonify
from flask_sock import Sock
from sqlalchemy import Table, insert

from bench import NOOP_TASK
from order_engine.config import Settings

baseline_bp = Blueprint("bench", __name__, url_prefix="/bench")
floor_bp = Blueprint("floor", __name__, url_prefix="/floor")
probes = Blueprint("floor_probes", __name__)
# flask-sock reads its server options from the serving app's config: any Sock can declare.
sock = Sock()
# The row the baseline inserts, a fixed market order (the INSERT floor writes the same).
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


@floor_bp.post("/noop")
def noop() -> tuple[Response, int]:
    return jsonify(orderId="floor", status="pending"), 202


@sock.route("/ws", bp=floor_bp)
def one_message(ws: Any) -> None:
    at = datetime.now(UTC).isoformat()
    ws.send(json.dumps({"orderId": "floor", "seq": 1, "status": "pending", "at": at, "data": {}}))
    ws.close(1000)


@probes.get("/readyz")
def ready() -> tuple[Response, int]:
    return jsonify(status="ready"), 200


def create(kind: str = "project") -> Flask:
    """The bench's app: "project" (the engine's app plus the bench's routes) or "bare"."""
    if kind == "project":
        from order_engine.wsgi import app

        app.register_blueprint(baseline_bp)
        app.register_blueprint(floor_bp)
        return app
    app = Flask(__name__)
    # gunicorn_conf's post_worker_init opens the app's database pool: it needs the settings.
    app.config["SETTINGS"] = Settings.from_env()
    sock.init_app(app)
    app.register_blueprint(floor_bp)
    app.register_blueprint(probes)
    return app
