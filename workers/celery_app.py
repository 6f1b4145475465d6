"""Celery entry point: `celery -A workers.celery_app worker` (or `beat`).

The Celery app is the one bound to a Flask app, so every task runs in an app context.
"""

import logging
import signal

from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutting_down,
)

from order_engine.app import create_app
from order_engine.infra import logs
from order_engine.infra.db import WORKER_SESSION_TIMEOUTS_MS, warm_app_pool
from order_engine.infra.process import PROCESS
from order_engine.infra.queues import (
    EVALUATE_TRIGGERS,
    EXECUTE_ORDER,
    RECONCILE_ORDERS,
    SCHEDULE_SLICES,
)


@setup_logging.connect
def _our_logging(loglevel: object = None, **_kwargs: object) -> None:
    # Connected, this replaces Celery's own logging set-up: the worker's and beat's lines, and
    # Celery's own, go through order_engine.infra.logs (JSON with LOG_FORMAT=json), at the level of
    # the command's --loglevel.
    settings = flask_app.config["SETTINGS"]
    level = loglevel if isinstance(loglevel, str | int) and loglevel else settings.log_level
    logs.configure(level, settings.log_format)
    if not settings.log_control_tasks:
        for handler in logging.getLogger().handlers:
            handler.addFilter(
                logs.QuietControlTasks((EVALUATE_TRIGGERS, RECONCILE_ORDERS, SCHEDULE_SLICES))
            )


@task_prerun.connect
def _bind_task(task_id: str | None = None, kwargs: dict | None = None, **_rest: object) -> None:
    # Every line of the task's work, and Celery's "succeeded"/"retry" lines after it, carry
    # the task id and the order id (the attempt is bound once the worker claims the order).
    logs.clear()
    logs.bind(order_id=(kwargs or {}).get("order_id"), task_id=task_id)


@task_postrun.connect
def _unbind_task(**_kwargs: object) -> None:
    logs.clear()


flask_app = create_app()
flask_app.config["DB_SESSION_TIMEOUTS_MS"] = WORKER_SESSION_TIMEOUTS_MS
celery_app = flask_app.extensions["celery"]
celery_app.autodiscover_tasks(["workers"], related_name="tasks", force=True)


@worker_process_init.connect
def _forget_parent_connections(**_kwargs: object) -> None:
    # Pooled connections must not cross fork() (SQLAlchemy pooling docs): every resource the
    # parent built (engines, Redis clients, the chain's client) is dropped here, in one place.
    PROCESS.reset_after_fork()
    warm_app_pool(flask_app)  # this child's pool, opened before its first task


@worker_process_shutdown.connect
def _forget_live_gauges(pid: int | None = None, **_kwargs: object) -> None:
    # A prefork child's live gauges go with it (order_engine/infra/metrics.py).
    import os

    from order_engine.infra.metrics import process_exited

    process_exited(pid or os.getpid())


@worker_ready.connect
def _open_the_database_pool(**_kwargs: object) -> None:
    # A gevent or threads pool runs its tasks in this process: open its database pool now,
    # not in the first burst of orders. (A prefork child opens its own, above.)
    if flask_app.config["SETTINGS"].worker_pool != "prefork":
        warm_app_pool(flask_app)


@worker_shutting_down.connect
def _stop_within_bound(**_kwargs: object) -> None:
    # Celery's warm shutdown only sets a flag that its loops check: a worker looping in the
    # broker's connection retry, or idle on a broker that was emptied, can ignore it for ever.
    # The kernel ends this process (SIGALRM's default action) once the bound has passed; the
    # running tasks have finished or hit their time limit by then.
    # A second stop request (Ctrl-C twice) keeps the first deadline.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    remaining = signal.alarm(0)
    signal.alarm(remaining or flask_app.config["SETTINGS"].worker_stop_bound_s)


# Celery counts retries, the design counts attempts: max_retries = attempts - 1.
_settings = flask_app.config["SETTINGS"]
celery_app.conf.task_annotations = {
    EXECUTE_ORDER: {
        "max_retries": _settings.order_max_attempts - 1,
        "retry_backoff": max(1, _settings.retry_backoff_s),
        "retry_backoff_max": _settings.retry_backoff_max_s,
    }
}
