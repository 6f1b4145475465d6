"""The node's admin methods."""

from __future__ import annotations

from decimal import localcontext
from typing import Any

from order_engine.localnet.catalogue import METEORA
from order_engine.localnet.cluster.bank import PoolRecord


def _pool_json(record: PoolRecord) -> dict[str, Any]:
    from order_engine.localnet import pools

    mid = record.mid_price()
    reserve_x, reserve_y = pools.reserves(record.pool)
    if mid is not None:
        with localcontext() as ctx:
            ctx.prec = 12
            mid = +mid
    return {
        "poolId": record.pool_id,
        "venue": record.venue,
        "address": record.address,
        "tokenX": record.spec.token_x.symbol,
        "tokenY": record.spec.token_y.symbol,
        "mintX": record.mint_x,
        "mintY": record.mint_y,
        "mid": None if mid is None else format(mid, "f"),
        "reserveX": str(reserve_x),
        "reserveY": str(reserve_y),
        "drained": record.drained,
        "binStep": record.spec.bin_step if record.venue == METEORA else None,
    }
