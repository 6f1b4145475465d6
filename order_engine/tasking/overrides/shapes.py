"""How an override checks that an internal of Celery or kombu still has the shape it was
written against: a check raises `Unfit`, and `install` names the override it belongs to."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def expect(condition: bool, problem: str) -> None:
    if not condition:
        raise Unfit(problem)


def expect_parameters(
    owner: Any,
    name: str,
    names: list[str],
    partial_list: bool = False,
    function: Callable[..., Any] | None = None,
) -> None:
    """`owner.name` (or `function`, what it wraps) takes `names` first (or among its
    parameters, with `partial_list`)."""
    where = f"{getattr(owner, '__module__', '')}.{getattr(owner, '__qualname__', owner.__name__)}"
    where = f"{where.strip('.')}.{name}"
    function = function or getattr(owner, name, None)
    if not callable(function):
        raise Unfit(f"{where} is gone")
    have = list(inspect.signature(function).parameters)
    fits = set(names) <= set(have) if partial_list else have[: len(names)] == names
    expect(fits, f"{where} takes {have}, expected {names}")


class Unfit(Exception):
    """Raised by a check; `install` names the override it belongs to."""
