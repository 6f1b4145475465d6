"""gunicorn settings shared by every way the API is started (`--config python:...`).

On SIGTERM a gthread worker stops accepting and waits `graceful_timeout` for open requests, but
a WebSocket following an order may outlive that. So the worker also tells every open stream to
close now, with code 1001 and the `afterSeq` to resume from, and the client reconnects to
another worker or host without losing an event.
"""

import signal

graceful_timeout = 15
keepalive = 5
# gunicorn >= 24 opens a control socket at one path per user ($HOME/.gunicorn/gunicorn.ctl),
# which every instance on the machine overwrites; nothing here uses it. (Older versions ignore
# the unknown setting.)
control_socket_disable = True


def post_worker_init(worker):
    from order_engine.streaming import shutting_down

    original = worker.handle_exit

    def handle_exit(sig, frame):
        shutting_down.set()
        original(sig, frame)

    # gunicorn installed its handler before this hook runs: install ours in its place.
    signal.signal(signal.SIGTERM, handle_exit)
