"""The engine's own quotes at submission, from this process's pool index: a limit order's
check against the market now, a trailing stop's starting peak. Outside an app (a tool, a test
without one) there is none, and the order waits for the trigger engine's first evaluation."""

from __future__ import annotations

import logging
from fractions import Fraction

from order_engine.domain.tokens import Token
from order_engine.services.triggers.market import class_price

log = logging.getLogger(__name__)


def quote_now(token_in: Token, token_out: Token, amount_in: int) -> int | None:
    """The engine's own net quote, from this process's pool index; None when it cannot quote
    now (the order then waits, and the trigger engine decides within a slot)."""
    from flask import current_app, has_app_context

    from order_engine.chain.client import RpcError
    from order_engine.chain.layouts.codec import AccountDecodeError
    from order_engine.domain.errors import ExecutionError
    from order_engine.services.resources import chain_resources

    if not has_app_context():
        return None
    try:
        router = chain_resources(current_app.config["SETTINGS"]).router
        return router.route(token_in, token_out, amount_in).amount_out
    except (ExecutionError, RpcError, AccountDecodeError) as exc:
        log.info("no quote at submission (%s); the limit order waits", exc)
        return None


def class_quote_now(token_in: Token, token_out: Token, k: int) -> Fraction | None:
    """A size class's quote from this process's pool index (a trailing stop's starting peak);
    None when it cannot quote now (the trigger engine's first evaluation then gives it one)."""
    from flask import current_app, has_app_context

    from order_engine.chain.client import RpcError
    from order_engine.chain.layouts.codec import AccountDecodeError
    from order_engine.services.resources import chain_resources

    if not has_app_context():
        return None
    try:
        router = chain_resources(current_app.config["SETTINGS"]).router
        return class_price(router, token_in, token_out, k)
    except (RpcError, AccountDecodeError) as exc:
        log.info("no class quote at submission (%s); the trailing stop starts without", exc)
        return None
