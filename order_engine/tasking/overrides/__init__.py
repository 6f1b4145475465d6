"""Every place the engine replaces an internal of Celery or kombu, in this one package
(`transport`, `sender`, `drain`; `shapes` holds what their checks share).

Each override below says what it replaces, why, and what it saved when it was measured. They
were written against the Celery and kombu versions pinned in setup.cfg. At start-up `install`
checks that every internal it replaces still has the shape it was written against, and refuses
to start (`OverrideMismatch`, naming the override) when one does not: an upgrade must fail
loudly, not quietly lose messages. One setting turns them all off (`CELERY_OVERRIDES=false`):
the engine then runs on Celery and kombu exactly as they come, with the same behaviour and a
higher cost per order; the test suite passes both ways.

1. `redis-transport` — kombu's Redis transport (`transport.Channel`, `QoS`, `Transport`):
   - one `redis.Redis` client per channel. kombu builds a new one for every operation that is
     not handed one (`Channel.conn_or_acquire`): each ack, each reservation, each fanout
     publish, and building one runs redis-py's whole client constructor: ~4 % of the worker's
     CPU under the peer load. A `redis.Redis` holds no connection of its own (each command
     checks one out of the channel's pool), so one serves every greenlet and thread; it is
     rebuilt when kombu replaces the pool (after a fork or a reconnection).
   - the consumer takes the messages waiting in a queue together (`Channel._brpop_read`):
     kombu's loop takes one per BRPOP and reserves it with one more round trip (ZADD to the
     unacked index, HSET of the message), so a busy gevent worker spent a quarter of its CPU
     there. One Lua script now reserves the message BRPOP returned and takes and reserves up
     to 63 more waiting behind it (never more than the prefetch window has room for), writing
     each reservation exactly as kombu's `QoS.append` does; each is then delivered as kombu
     delivers one. Taking and reserving in one script leaves no taken message unreserved.
     Measured under the peer load, three alternating pairs: worker CPU per order 3.96, 3.62,
     3.50 -> 3.47, 3.36, 2.99 ms (-12 %).
   - acks that meet in flight go together (`batching.GroupCommit`): one ZREM/HDEL pipeline
     for all of them instead of one round trip each (Redis commands per order 28.9 -> 24.6).
     An ack still returns only once its message is removed, and a failure reaches every ack of
     the batch, as it would have reached each alone: the message stays reserved and Redis
     delivers it again after the visibility timeout, which the engine's claims make harmless.
   - reservations, acks and rejects go as plain pipelines, not MULTI/EXEC (kombu builds all
     three with `QoS.pipe_or_acquire`): two commands fewer a task. Redis runs the commands of
     one write back to back, so MULTI bought isolation nobody needs (the visibility sweep only
     takes entries older than its timeout) and atomicity against a Redis crash between the two
     commands, which loses the queue anyway when Redis keeps nothing on disk. A reservation
     writes the index first: a crash between leaves an index entry without its message, which
     the sweep drops, never a message the sweep cannot find. A message lost that way, like one
     popped by BRPOP before its reservation (a window kombu has), is an order the reconciler
     sends again.
2. `direct-task-sender` — kombu's publish path for `execute_order` on a Redis broker
   (`RedisTaskSender`): kombu builds a client per Redis call of a publish (~22 % of an
   `apply_async`), once for the task and once more for its `task-sent` event, through layers
   of producer, retry and exchange code. The sender writes the same two messages — Celery
   builds the task message itself; the kombu envelopes are written as kombu's Redis transport
   writes them (`sender._envelope`, checked against kombu's own builders at start-up) — with one
   long-lived client in one pipelined round trip, and sends that meet in flight share it.
3. `dispatcher-drain` — `celery.worker.loops._quick_drain`'s 0.1 s wait. Celery's loop for
   green pools (`synloop`), when AMQP heartbeats are on, drains the event dispatcher's
   connection after every message it takes, waiting up to 0.1 s for heartbeat frames that come
   seconds apart: with RabbitMQ a gevent worker took ten tasks a second (300 no-op tasks:
   30 s; 1.3 s with a 1 ms wait, which still reads a waiting frame). The Redis transport has no
   AMQP heartbeats and never takes this path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from order_engine.config import ConfigError
from order_engine.tasking.overrides import drain, sender, transport
from order_engine.tasking.overrides.sender import RedisTaskSender
from order_engine.tasking.overrides.shapes import Unfit
from order_engine.tasking.overrides.transport import TRANSPORT, Channel, QoS, Transport

__all__ = [
    "OVERRIDES",
    "TRANSPORT",
    "Channel",
    "OverrideMismatch",
    "QoS",
    "RedisTaskSender",
    "Transport",
    "install",
]


class OverrideMismatch(ConfigError):
    """An internal that an override replaces no longer looks as the override expects."""

    def __init__(self, override: str, problem: str) -> None:
        super().__init__(
            f"the {override!r} override of Celery/kombu internals does not fit the installed "
            f"versions: {problem}. Install the versions pinned in setup.cfg, or start with "
            "CELERY_OVERRIDES=false to run on Celery and kombu as they come."
        )
        self.override = override


@dataclass(frozen=True)
class Override:
    name: str
    replaces: str
    check: Callable[[], None]


OVERRIDES = (
    Override(
        "redis-transport",
        "kombu.transport.redis Channel._create_client, Channel._brpop_read, QoS.append, "
        "QoS.pipe_or_acquire, QoS.ack",
        transport.check,
    ),
    Override(
        "direct-task-sender",
        "kombu's publish path and its Redis message envelope, for execute_order",
        sender.check,
    ),
    Override(
        "dispatcher-drain",
        "celery.worker.loops._quick_drain's 0.1 s wait",
        drain.check,
    ),
)


def install(enabled: bool) -> str | None:
    """Check every override against the installed Celery and kombu and put in place what is
    patched globally; returns the broker transport to use (None: kombu's own). Raises
    OverrideMismatch, naming the override, if an internal no longer fits."""
    if not enabled:
        return None
    for override in OVERRIDES:
        try:
            override.check()
        except Unfit as unfit:
            raise OverrideMismatch(override.name, str(unfit)) from None
        except Exception as exc:  # noqa: BLE001 - any surprise in the shape is a mismatch
            raise OverrideMismatch(override.name, f"{type(exc).__name__}: {exc}") from exc
    drain.shorten()
    return TRANSPORT
