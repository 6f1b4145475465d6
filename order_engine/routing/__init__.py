"""Routing: a pure decision over the pools' quotes (`decide`), and the fan-out that reads the
pools and quotes them (`Router`)."""

from order_engine.routing.decide import (
    SPLIT_THRESHOLD_BPS,
    Leg,
    RouteDecision,
    decide,
    output_function,
    quote_pool,
)
from order_engine.routing.router import Router

__all__ = [
    "SPLIT_THRESHOLD_BPS",
    "Leg",
    "RouteDecision",
    "Router",
    "decide",
    "output_function",
    "quote_pool",
]
