"""The slot's auction: which transactions (and background bids) a contested slot's block holds.

Everything ready competes at once: sorted by price per compute unit, highest first (ties in
arrival order, real transactions before background bids), each is included while the block's
budget and every account it write-locks still hold its compute-unit limit. The first that does
not fit the block's budget closes the block; the first that does not fit an account's closes
that account (what writes it waits; what writes elsewhere goes on). agave's scheduler would
still squeeze smaller transactions into the last gaps; closing them instead keeps the block's
and each account's minimum price where they cleared, which is what a fee estimator reads (a
transfer slipping into a gap says nothing about the price of a swap's worth of block space).
What a transaction costs the block is its requested limit (agave's cost model charges the
limit, plus signature and write-lock costs this leaves out). Pure: no clock, no state, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from order_engine.localnet.cluster.demand import Bid


@dataclass(frozen=True)
class Offer:
    """A real transaction or bundle ready for the slot."""

    key: str
    price: int  # micro-lamports per CU: priority fee, plus a bundle's tip, per CU
    units: int  # its compute-unit limit (a bundle: its transactions' summed)
    writable: tuple[str, ...]
    seq: int  # arrival order


def select(
    offers: Sequence[Offer],
    bids: Sequence[Bid],
    hot_accounts: Sequence[tuple[str, ...]],
    block_cu: int,
    account_cu: int,
) -> tuple[list[Offer], list[Bid]]:
    """(the offers included, in block order; the bids included)."""
    ranked: list[tuple[int, int, int, Offer | Bid]] = [(-o.price, 0, o.seq, o) for o in offers]
    ranked += [(-b.price, 1, i, b) for i, b in enumerate(bids)]
    ranked.sort(key=lambda item: item[:3])
    block_used = 0
    used: dict[str, int] = {}
    closed: set[str] = set()
    offers_in: list[Offer] = []
    bids_in: list[Bid] = []
    for _, _, _, item in ranked:
        units = item.units
        if block_used + units > block_cu:
            break  # the block is full
        if isinstance(item, Offer):
            accounts = item.writable
        else:
            accounts = hot_accounts[item.hot] if item.hot >= 0 else ()
        full = [a for a in accounts if a in closed or used.get(a, 0) + units > account_cu]
        if full:
            closed.update(full)
            continue
        block_used += units
        for account in accounts:
            used[account] = used.get(account, 0) + units
        if isinstance(item, Offer):
            offers_in.append(item)
        else:
            bids_in.append(item)
    return offers_in, bids_in
