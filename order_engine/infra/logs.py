"""Logging: one JSON object per line (`LOG_FORMAT=json`) or readable lines (`text`, the default).

Every line written while an order is being worked on carries its `order_id`, its `attempt` (the
attempt number counted in the database, once the worker has claimed it) and the Celery
`task_id`: they sit in context variables, bound by the Celery task signals (workers/
celery_app.py) and by the services when they learn them, and added to each record by
`ContextFilter`. Celery's own lines about a task ("received", "succeeded", "retry") name the task
in their arguments, from which the filter takes the ids too. The context lives in the
greenlet or thread that does the work, so concurrent tasks never see each other's ids.

No line may carry a secret: the filter rewrites every message (and traceback) through `redact`,
which removes API keys, bearer credentials, stream tickets, passwords in URLs, Solana keypair
arrays, and the values registered with `register_secret` (the wallet's secret key).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_order_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("order_id", default=None)
_attempt: contextvars.ContextVar[int | None] = contextvars.ContextVar("attempt", default=None)
_task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("task_id", default=None)

# -- the context --------------------------------------------------------------------------------


def bind(
    order_id: str | uuid.UUID | None = None,
    attempt: int | None = None,
    task_id: str | None = None,
) -> None:
    """Add what is known about the work at hand to every following line of this context."""
    if order_id is not None:
        _order_id.set(str(order_id))
    if attempt is not None:
        _attempt.set(attempt)
    if task_id is not None:
        _task_id.set(task_id)


def clear() -> None:
    _order_id.set(None)
    _attempt.set(None)
    _task_id.set(None)


@contextmanager
def order_context(order_id: str | uuid.UUID | None, task_id: str | None = None) -> Iterator[None]:
    """Lines inside carry the order and task ids (and the attempt once bound); restored after."""
    tokens = (
        _order_id.set(None if order_id is None else str(order_id)),
        _attempt.set(None),
        _task_id.set(task_id),
    )
    try:
        yield
    finally:
        for var, token in zip((_order_id, _attempt, _task_id), tokens, strict=True):
            var.reset(token)  # type: ignore[attr-defined]


# -- secrets ------------------------------------------------------------------------------------

# Each pattern runs only on text holding one of its clues (in lower case): most lines hold
# none, and five regular expressions over every line were 1.5 % of a busy worker's CPU.
_PATTERNS: list[tuple[tuple[str, ...], re.Pattern[str], str]] = [
    # API keys: oe_<8 hex prefix>_<43 secret characters>; the prefix identifies, it is kept.
    (("oe_",), re.compile(r"\b(oe_[0-9a-f]{8}_)[A-Za-z0-9_-]{43}"), r"\1[redacted]"),
    # Authorization header values and bearer tokens however they appear.
    (
        ("bearer", "basic"),
        re.compile(r"(?i)\b(bearer|basic)(\s+|%20)[A-Za-z0-9._~+/=-]+"),
        r"\1\2[redacted]",
    ),
    # One-use stream tickets in URLs.
    (("ticket=",), re.compile(r"(?i)\b(ticket=)[A-Za-z0-9_-]+"), r"\1[redacted]"),
    # Passwords in URLs (database, broker).
    (("://",), re.compile(r"\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@"), r"\1[redacted]@"),
    # A Solana keypair file's content: a JSON array of 64 byte values.
    (("[",), re.compile(r"\[\s*(?:\d{1,3}\s*,\s*){63}\d{1,3}\s*\]"), "[redacted keypair]"),
]
_registered: set[str] = set()


def register_secret(value: str) -> None:
    """Never log this exact value (e.g. the wallet's base58 secret key)."""
    if len(value) >= 16:
        _registered.add(value)


def redact(text: str) -> str:
    lowered = text.lower()
    for clues, pattern, replacement in _PATTERNS:
        if any(clue in lowered for clue in clues):
            text = pattern.sub(replacement, text)
    for secret in _registered:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text


# -- records ------------------------------------------------------------------------------------

# Celery's own task lines ("Task orders.execute_order[<id>] received", "succeeded in", "retry")
# pass a mapping with the task's id and its kwargs' repr.
_ORDER_ID_IN_KWARGS = re.compile(r"['\"]order_id['\"]:\s*['\"]([0-9a-fA-F-]{36})['\"]")


class ContextFilter(logging.Filter):
    """Adds `order_id`, `attempt` and `task_id` to every record, and redacts its text."""

    def filter(self, record: logging.LogRecord) -> bool:
        order_id, attempt, task_id = _order_id.get(), _attempt.get(), _task_id.get()
        args = record.args
        if isinstance(args, Mapping) and "id" in args and "name" in args:
            task_id = task_id or str(args["id"])
            if order_id is None:
                found = _ORDER_ID_IN_KWARGS.search(str(args.get("kwargs", "")))
                order_id = found.group(1) if found else None
        record.order_id, record.attempt, record.task_id = order_id, attempt, task_id
        message = redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None  # formatted (and redacted) above
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the order's ids, the process."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "order_id": getattr(record, "order_id", None),
            "attempt": getattr(record, "attempt", None),
            "task_id": getattr(record, "task_id", None),
            "pid": record.process,
        }
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`2026-11-30 14:00:00,123 INFO order_engine.x [order=… attempt=2 task=…]: message`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = [
            f"{name}={value}"
            for name, value in (
                ("order", getattr(record, "order_id", None)),
                ("attempt", getattr(record, "attempt", None)),
                ("task", getattr(record, "task_id", None)),
            )
            if value is not None
        ]
        record.ids = f" [{' '.join(ids)}]" if ids else ""
        return super().format(record)


class QuietControlTasks(logging.Filter):
    """Drops Celery's INFO lines about the named tasks, the scheduler's own (beat's "Sending
    due task", the worker's "received" and "succeeded"): with a trigger evaluation every 500 ms
    they were six lines a second that buried everything else. Their work still logs what it did
    (a re-dispatch, a trigger); LOG_CONTROL_TASKS=true or LOG_LEVEL=DEBUG keeps them."""

    def __init__(self, task_names: tuple[str, ...]) -> None:
        super().__init__()
        self.task_names = task_names

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not record.name.startswith("celery."):
            return True
        message = record.getMessage()
        return not any(name in message for name in self.task_names)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def handler(log_format: str) -> logging.Handler:
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(formatter(log_format))
    stream.addFilter(ContextFilter())
    stream.set_name("order_engine")
    return stream


def configure(level: str | int, log_format: str) -> None:
    """Send the root logger's lines through our handler, once per process. Like
    `logging.basicConfig`, it leaves a root logger that already has handlers (a test runner's)
    alone, apart from the level."""
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        root.addHandler(handler(log_format))
        # Warnings (Celery's, a library's) become log lines too, not bare text on stderr.
        logging.captureWarnings(True)


def gunicorn_logconfig(level: str, log_format: str) -> dict[str, Any]:
    """gunicorn's own loggers through the same format (its `logconfig_dict`)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "order_engine.infra.logs.ContextFilter"}},
        "formatters": {
            "json": {"()": "order_engine.infra.logs.JsonFormatter"},
            "text": {"()": "order_engine.infra.logs.TextFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["context"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["console"], "propagate": False},
            # No access log (as without this config): a line per request costs the API CPU
            # on every order; /metrics counts the requests instead.
            "gunicorn.access": {"level": "WARNING", "handlers": ["console"], "propagate": False},
        },
        "root": {"level": level, "handlers": []},
    }
