"""The WSGI app of the API floors (`python -m bench.floors`), served by the project's gunicorn
command line in place of `order_engine.wsgi:app`.

`create("project")` is the engine's own app (every request hook, the error handlers, the
JSON provider, flask-sock as configured) with two routes added outside `/api/` (so no key is
checked); `create("bare")` is a plain Flask app with flask-sock and the same two routes, plus
the two answers the bench stack waits for before it uses an API (`/readyz` 200 and
`POST /bench/baseline` 202, both doing nothing).

- `POST /floor/noop`: 202 and a small JSON body, nothing else.
- `GET /floor/ws`: a WebSocket that sends one small event-shaped message and closes (1000).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, jsonify
from flask_sock import Sock

from order_engine.config import Settings

bp = Blueprint("floor", __name__, url_prefix="/floor")
probes = Blueprint("floor_probes", __name__)
# flask-sock reads its server options from the serving app's config: any Sock can declare.
sock = Sock()


@bp.post("/noop")
def noop() -> tuple[Response, int]:
    return jsonify(orderId="floor", status="pending"), 202


@sock.route("/ws", bp=bp)
def one_message(ws: Any) -> None:
    at = datetime.now(UTC).isoformat()
    ws.send(json.dumps({"orderId": "floor", "seq": 1, "status": "pending", "at": at, "data": {}}))
    ws.close(1000)


@probes.get("/readyz")
def ready() -> tuple[Response, int]:
    return jsonify(status="ready"), 200


@probes.post("/bench/baseline")
def baseline() -> tuple[Response, int]:
    return jsonify(status="pending"), 202


def create(kind: str = "project") -> Flask:
    """The floor app: "project" (the engine's app plus the floor routes) or "bare"."""
    if kind == "project":
        from order_engine.wsgi import app

        app.register_blueprint(bp)
        return app
    app = Flask(__name__)
    # gunicorn_conf's post_worker_init opens the app's database pool: it needs the settings.
    app.config["SETTINGS"] = Settings.from_env()
    sock.init_app(app)
    app.register_blueprint(bp)
    app.register_blueprint(probes)
    return app
