"""Process-wide chain resources: created once per process (after any fork, held by
`process.PROCESS`), shared by its tasks.

The JSON-RPC connection pool, the pool index with its per-slot account cache, the router and
the wallet hold no order state; every order the process runs shares them, which is what makes
a blockhash or a pool read cost one RPC per slot per process rather than one per order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from solders.keypair import Keypair

from order_engine.chain.client import RpcChain, RpcError
from order_engine.chain.fees import FeeOracle
from order_engine.chain.layouts.codec import AccountDecodeError
from order_engine.chain.pools import PoolIndex
from order_engine.chain.wallet import ensure_dev_keypair, load_keypair
from order_engine.config import DEV_WALLET_PATH, Settings
from order_engine.domain.errors import ExecutionError
from order_engine.infra.process import PROCESS
from order_engine.routing import Router
from order_engine.services.execution.landing import UnitTable
from order_engine.venues.math import VenueMathError


@dataclass(frozen=True)
class ChainResources:
    chain: RpcChain
    pools: PoolIndex
    router: Router
    wallet: Keypair
    fees: FeeOracle  # the priority fee oracle: one read per slot per process per account set
    units: UnitTable  # what swaps of each shape consumed


def chain_resources(settings: Settings) -> ChainResources:
    """This process's chain client, pool index, router and wallet (built on first use)."""
    return PROCESS.get(
        "chain",
        (settings.solana_rpc_url, settings.wallet_keypair),
        lambda: build_chain_resources(settings),
    )


def build_chain_resources(settings: Settings) -> ChainResources:
    chain = RpcChain(
        settings.solana_rpc_url,
        timeout_s=settings.rpc_timeout_s,
        block_engine_url=settings.block_engine_url,
    )
    pools = PoolIndex(chain)
    fees = FeeOracle.configured(chain.recent_prioritization_fees, settings)
    return ChainResources(chain, pools, Router(pools), wallet(settings), fees, UnitTable())


def wallet(settings: Settings) -> Keypair:
    """The configured wallet; the development key is generated on first use."""
    if settings.wallet_keypair == str(DEV_WALLET_PATH):
        ensure_dev_keypair(Path(settings.wallet_keypair))
    return load_keypair(settings.wallet_keypair)


def pair_is_listed(settings: Settings, mint_in: str, mint_out: str) -> bool:
    """Whether some venue lists a pool for the pair, as the chain shows it (cached).

    When the chain cannot be asked, the order is given the benefit of the doubt: its
    execution fails with NO_ROUTE if no pool exists, and intake never depends on the node.
    """
    try:
        return bool(chain_resources(settings).pools.pools_for(mint_in, mint_out))
    except (ExecutionError, RpcError, AccountDecodeError):
        return True


def pair_venues(settings: Settings, mint_in: str, mint_out: str) -> list[str] | None:
    """The venues of the pair's pools, one entry per pool, as the chain shows them (cached);
    None when the chain cannot be asked."""
    try:
        return [ref.venue for ref in chain_resources(settings).pools.pools_for(mint_in, mint_out)]
    except (ExecutionError, RpcError, AccountDecodeError):
        return None


def mint_has_pool(settings: Settings, mint: str) -> bool:
    """Whether some pool of either venue trades this mint (pools re-discovered within ~1 s).
    When the chain cannot be asked, False: a sniper then waits, and buys once a pool shows."""
    try:
        refs = chain_resources(settings).pools.all_pools(max_age_s=1.0)
    except (ExecutionError, RpcError, AccountDecodeError):
        return False
    return any(mint in (ref.mint_x, ref.mint_y) for ref in refs)


# The most of a token an order may sell when the chain cannot be asked (whole tokens): a
# sanity bound only; with the chain up the pools' own reserves bound it (`max_fillable_atoms`).
STATIC_MAX_AMOUNT = {
    "SOL": 10_000_000,
    "USDC": 10_000_000_000,
    "USDT": 10_000_000_000,
    "JUP": 10_000_000_000,
    "BONK": 1_000_000_000_000_000,
    "RAY": 1_000_000_000,
}
FILLABLE_CACHE_S = 10.0


def max_fillable_atoms(settings: Settings, mint_in: str, mint_out: str) -> int | None:
    """The most `mint_in` (atoms) the pair's pools could ever fill: what their whole
    reserves of `mint_out` are worth in `mint_in` at each pool's spot price. No fill, whatever
    the slippage, pays out more than the pools hold. None when the chain cannot be asked
    (cached per pair for a few seconds; reserves move far less than this bound is loose)."""
    cache: dict[tuple[str, str], tuple[float, int | None]] = PROCESS.get(
        "fillable", settings.solana_rpc_url, dict
    )
    cached = cache.get((mint_in, mint_out))
    now = time.monotonic()
    if cached is not None and now - cached[0] < FILLABLE_CACHE_S:
        return cached[1]
    found = _read_fillable(settings, mint_in, mint_out)
    cache[(mint_in, mint_out)] = (now, found)
    return found


def _read_fillable(settings: Settings, mint_in: str, mint_out: str) -> int | None:
    try:
        index = chain_resources(settings).pools
        refs = index.pools_for(mint_in, mint_out)
        if not refs:
            return None
        total = Fraction(0)
        for view in index.views(refs):
            swap_for_y = view.ref.swaps(mint_in, mint_out)
            if view.cpmm is not None:
                # At the spot price reserve_out is worth exactly reserve_in.
                total += view.cpmm.reserves(bool(swap_for_y))[0]
            elif view.dlmm is not None:
                out = view.dlmm.total_reserve_out(bool(swap_for_y))
                price = view.dlmm.spot_price()  # Y atoms per X atom
                total += out / price if swap_for_y else out * price
        return int(total)
    except (
        ExecutionError,
        RpcError,
        AccountDecodeError,
        VenueMathError,
        ArithmeticError,
        ValueError,
    ):
        return None
