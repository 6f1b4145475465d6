"""gunicorn settings shared by every way the API is started (`--config python:...`).

On SIGTERM a worker (gevent by default, or gthread) stops accepting and waits
`graceful_timeout` for open requests, but a WebSocket following an order may outlive that. So
the worker also tells every open stream to close now, with code 1001 and the `afterSeq` to
resume from, and the client reconnects to another worker or host without losing an event.
"""

import json
import signal
from typing import Any

import gunicorn.http.wsgi
import gunicorn.util

from order_engine.config import ConfigError, Settings, _process_environment
from order_engine.errors import envelope
from order_engine.infra.logs import gunicorn_logconfig

graceful_timeout = 15
# Request line and headers are bounded by gunicorn itself (its defaults, stated here): a longer
# request line is a 414, too many or too long header fields a 431, each as the JSON envelope.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
keepalive = 5
# gunicorn >= 24 opens a control socket at one path per user ($HOME/.gunicorn/gunicorn.ctl),
# which every instance on the machine overwrites; nothing here uses it. (Older versions ignore
# the unknown setting.)
control_socket_disable = True


def _log_settings() -> tuple[str, str]:
    environ = _process_environment()
    try:
        settings = Settings.from_env(environ)
    except ConfigError:  # the app itself reports the bad setting when it loads
        return "INFO", "text"
    return settings.log_level, settings.log_format


# gunicorn's own lines in the same format as the app's (JSON with LOG_FORMAT=json).
logconfig_dict = gunicorn_logconfig(*_log_settings())


def post_fork(_server: Any, _worker: Any) -> None:
    # The app is loaded in each worker after fork (no preload), so there is usually nothing
    # to drop; with `--preload` the master's engines and clients would be inherited.
    from order_engine.infra.process import PROCESS

    PROCESS.reset_after_fork()


def post_worker_init(worker: Any) -> None:
    from order_engine.live.streaming import stop_streams

    original = worker.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        stop_streams()
        original(sig, frame)

    # gunicorn installed its handler before this hook runs: install ours in its place.
    signal.signal(signal.SIGTERM, handle_exit)

    # Open this process's database pool now, not in the first burst of requests.
    from order_engine.infra.db import warm_app_pool

    warm_app_pool(worker.wsgi)  # the Flask app gunicorn loaded (order_engine.wsgi:app)


def post_request(_worker: Any, _req: Any, environ: dict[str, Any], _resp: Any) -> None:
    # An answer given before its request's body was read closes the connection (api/body.py):
    # half-close and drain what the client still sends first, so that it reads the answer, not
    # a reset (the staged close of RFC 9112 §9.6).
    from order_engine.api.body import UNREAD_BODY

    if environ.get(UNREAD_BODY):
        from order_engine.api.sock import drain_before_close

        drain_before_close(environ["gunicorn.socket"])


def child_exit(_server: Any, worker: Any) -> None:
    # A dead worker's live gauges (open WebSockets) must not count any more.
    from order_engine.infra.metrics import process_exited

    process_exited(worker.pid)


def _write_json_error(sock: Any, status_int: int, reason: str, mesg: str | None) -> None:
    """gunicorn answers requests it cannot parse (400, 414, 431, …) itself, before the app sees
    them, with an HTML page; every other error of this API is the JSON envelope (docs/api.md,
    "Errors"), so these are too."""
    body = json.dumps(envelope(status_int, reason, mesg or reason)).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    gunicorn.util.write_nonblock(sock, head + body)


# The workers call `util.write_error` through the module, so replacing it here (the config is
# loaded before the workers fork) covers every worker class.
gunicorn.util.write_error = _write_json_error


_process_headers = gunicorn.http.wsgi.Response.process_headers


def _process_headers_honouring_close(response: Any, headers: list[tuple[str, str]]) -> None:
    """gunicorn drops an application's `Connection` header (hop-by-hop) and keeps the connection
    open, so after an answer given before the request's body was read it would go on reading
    that body, for as long as the client sends it, and parse the rest as the next request. An
    application's `Connection: close` closes the connection here, as RFC 9112 §9.6 has it."""
    _process_headers(response, headers)
    if any(n.lower() == "connection" and v.strip().lower() == "close" for n, v in headers):
        response.force_close()


gunicorn.http.wsgi.Response.process_headers = _process_headers_honouring_close
