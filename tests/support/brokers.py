"""The Celery broker of a test session: Redis (the default) or RabbitMQ (`TEST_BROKER=rabbitmq`).

`make test-rabbitmq` sets `TEST_BROKER=rabbitmq` and runs the tests marked `broker` against the
RabbitMQ named by `TEST_RABBITMQ_URL` (default amqp://guest:guest@127.0.0.1:5672/). When
`rabbitmqctl` can be run here, the session gets a virtual host of its own (created at the start,
deleted at the end), so that two sessions on one RabbitMQ never take each other's messages;
otherwise it uses the URL's virtual host and purges the project's queues.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from order_engine.tasking.app import CONTROL_QUEUE, TASK_QUEUE, is_amqp

TEST_BROKER = os.environ.get("TEST_BROKER", "redis").strip().lower()
# `make test-no-overrides` runs the suite on Celery and kombu as they come
# (order_engine/tasking/overrides/).
CELERY_OVERRIDES = os.environ.get("TEST_CELERY_OVERRIDES", "true").strip().lower() != "false"
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


# A database of the session's Redis broker server that no worker reads: where the tasks of the
# in-process apps (the `app` fixture's) go. Their orders are committed for real, as intake
# commits them in production, so a live stack's worker reading the shared broker would run them.
UNREAD_BROKER_DB = 10


def unread_broker(settings: dict[str, str], shared_broker_url: str) -> dict[str, str]:
    """`settings` with the tasks sent to UNREAD_BROKER_DB when they would go to the session's
    shared broker; an AMQP broker is left as it is (the `app` tests do not run on one)."""
    url = settings["CELERY_BROKER_URL"]
    if url != shared_broker_url or is_amqp(url):
        return settings
    return {**settings, "CELERY_BROKER_URL": url.rsplit("/", 1)[0] + f"/{UNREAD_BROKER_DB}"}


def rabbitmq_reachable(url: str = RABBITMQ_URL) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2):
            return True
    except OSError:
        return False


def with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def _rabbitmqctl(*args: str) -> bool:
    try:
        done = subprocess.run(
            ["rabbitmqctl", "-q", *args], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# Virtual hosts this session made (deleted when the session's broker fixture ends).
_made_vhosts: list[str] = []


def _add_vhost(url: str, vhost: str) -> bool:
    """Make `vhost` on the RabbitMQ of `url`, when that is this machine's (rabbitmqctl talks to
    the local node only)."""
    parts = urlsplit(url)
    user = parts.username or "guest"
    if (
        parts.hostname not in {"127.0.0.1", "localhost", "::1"}
        or shutil.which("rabbitmqctl") is None
    ):
        return False
    if not _rabbitmqctl("add_vhost", vhost):
        return False
    _made_vhosts.append(vhost)
    return _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")


@contextlib.contextmanager
def rabbitmq_session_vhost(url: str = RABBITMQ_URL) -> Iterator[str]:
    """A broker URL on a virtual host of this session's own, when rabbitmqctl lets us make one
    (deleted after, with any other the session made); else `url` itself."""
    vhost = f"oe-test-{uuid.uuid4().hex[:8]}"
    try:
        yield with_vhost(url, vhost) if _add_vhost(url, vhost) else url
    finally:
        while _made_vhosts:
            _rabbitmqctl("delete_vhost", _made_vhosts.pop())


def purge_broker(url: str) -> None:
    """Drop the messages left in the project's queues (by earlier tests or sessions)."""
    if is_amqp(url):
        from kombu import Connection

        with Connection(url, connect_timeout=5) as conn:
            channel = conn.default_channel
            for queue in (TASK_QUEUE, CONTROL_QUEUE):
                with contextlib.suppress(Exception):
                    channel.queue_purge(queue)
        return
    import redis

    with redis.Redis.from_url(url) as client:
        client.flushdb()


def queue_depth(url: str, queue: str = TASK_QUEUE) -> int:
    """Messages ready in a queue (not those a worker holds unacknowledged)."""
    if is_amqp(url):
        from kombu import Connection

        with Connection(url, connect_timeout=5) as conn:
            try:
                return conn.default_channel.queue_declare(queue, passive=True).message_count
            except Exception:  # noqa: BLE001 - not declared yet: empty
                return 0
    import redis

    with redis.Redis.from_url(url) as client:
        return int(client.llen(queue))


def private_broker_url(url: str, redis_db: int) -> str:
    """A broker no other worker of the session consumes: another Redis database, or another
    RabbitMQ virtual host (made for the session; the session's own, purged, if none can be)."""
    if is_amqp(url):
        parts = urlsplit(url)
        vhost = f"{unquote(parts.path.lstrip('/')) or 'root'}-{redis_db}"
        private = with_vhost(url, vhost)
        if vhost not in _made_vhosts and not _add_vhost(url, vhost):
            private = url
        purge_broker(private)
        return private
    base = url.rsplit("/", 1)[0] if url.rsplit("/", 1)[-1].isdigit() else url.rstrip("/")
    private = f"{base}/{redis_db}"
    purge_broker(private)
    return private
