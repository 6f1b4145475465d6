"""One attempt's swap transaction: a route decision turned into signed instructions, each leg
with its share of the order's minimum (the chain refuses a leg that pays less)."""

from __future__ import annotations

from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from order_engine.chain import tx as transactions
from order_engine.domain.amounts import leg_minimums
from order_engine.domain.tokens import Token
from order_engine.routing import RouteDecision

COMPUTE_UNIT_LIMIT_PER_LEG = 200_000


def build_swap(
    *,
    wallet: Keypair,
    token_in: Token,
    token_out: Token,
    amount_in: int,
    decision: RouteDecision,
    minimum: int,
    blockhash: str,
    memo: str,
    compute_unit_price: int,
) -> VersionedTransaction:
    """The signed transaction swapping `amount_in` along `decision`'s legs for at least
    `minimum` in all, with `memo` on chain (the client's order id, else ours: see
    Runner.run)."""
    input_mint = Pubkey.from_string(token_in.mint)
    output_mint = Pubkey.from_string(token_out.mint)
    minimums = leg_minimums(minimum, [leg.amount_out for leg in decision.legs])
    legs = []
    for leg, leg_minimum in zip(decision.legs, minimums, strict=True):
        view = leg.view
        assert view is not None  # the router quoted this leg on this view
        swap_for_y = bool(view.ref.swaps(token_in.mint, token_out.mint))
        legs.append(
            transactions.SwapLeg(
                venue=leg.dex,
                pool=Pubkey.from_string(view.ref.address),
                amount_in=leg.amount_in,
                minimum_out=leg_minimum,
                input_mint=input_mint,
                output_mint=output_mint,
                cpmm_state=view.cpmm_state,
                lb_pair=view.lb_pair,
                bin_array_indexes=view.bin_arrays_for_swap(swap_for_y) if view.lb_pair else (),
            )
        )
    return transactions.build_swap_transaction(
        payer=wallet,
        blockhash=Hash.from_string(blockhash),
        input_mint=input_mint,
        output_mint=output_mint,
        amount_in=amount_in,
        legs=legs,
        memo=memo,
        compute_unit_limit=COMPUTE_UNIT_LIMIT_PER_LEG * len(legs),
        compute_unit_price=compute_unit_price,
    )
