"""Injected faults."""

from __future__ import annotations

import random
from decimal import Decimal

PRICE_JUMP_BPS = 500
FAULT_KINDS = ("rpc_unavailable", "lost_response", "drop", "price_jump", "stall")
_MILLION = 1_000_000


def _roll(rng: random.Random, rate: Decimal) -> bool:
    """True with probability `rate`, from integers only."""
    return rng.randrange(_MILLION) < int(rate * _MILLION)
