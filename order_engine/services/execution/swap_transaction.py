"""One attempt's swap transaction: a route decision turned into signed instructions, each leg
with its share of the order's minimum (the chain refuses a leg that pays less); and the
largest transaction an order could ever need, which intake checks before accepting it.

Both come from one list of instructions (`_instructions`, on `tx.swap_instructions`): an
instruction added to the swap is counted by intake's check without another change.
"""

from __future__ import annotations

from collections.abc import Sequence

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from order_engine.chain import tx as transactions
from order_engine.chain.placeholders import placeholder_key, placeholder_leg
from order_engine.domain.amounts import leg_minimums
from order_engine.domain.errors import SwapNotBuildable
from order_engine.domain.tokens import Token
from order_engine.routing import RouteDecision

COMPUTE_UNIT_LIMIT_PER_LEG = 200_000
# The most legs a route has: the router splits an order across two pools at most
# (routing/decide.py, `split_legs`).
MAX_LEGS = 2
# What the worst case below does not count, in bytes. It counts every variant the builder
# makes: the most legs, each the largest kind of leg (a DLMM swap with the most bin arrays),
# wSOL wrap and unwrap when SOL is either side, the memo, the compute-budget instructions; a
# stand-in leg names as many accounts, and as many new ones, as a real one. So nothing is left
# today. Raise it by what a variant the stand-ins cannot express adds: a Token-2022 mint's
# program in a Raydium leg, or a DLMM bitmap-extension account, is one more key, 33 bytes.
SIZE_MARGIN_BYTES = 0
# A memo's longest form besides the client's id: the order's own id, a UUID (Runner.run).
ORDER_ID_MEMO_BYTES = 36


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
    Runner.run). Fails for good (no retry can cure it) with `TransactionTooLarge` when it
    exceeds a packet, and `SwapNotBuildable` when the builder refuses the legs."""
    input_mint = Pubkey.from_string(token_in.mint)
    output_mint = Pubkey.from_string(token_out.mint)
    try:
        legs = _legs(token_in, token_out, decision, minimum)
        instructions = _instructions(
            wallet.pubkey(), (input_mint, output_mint), amount_in, legs, memo, compute_unit_price
        )
    except ValueError as exc:  # the same route is refused the same way at every attempt
        raise SwapNotBuildable(f"the swap's instructions cannot be built: {exc}") from exc
    return transactions.sign_transaction(wallet, Hash.from_string(blockhash), instructions)


def _legs(
    token_in: Token, token_out: Token, decision: RouteDecision, minimum: int
) -> list[transactions.SwapLeg]:
    """The decision's legs as the builder takes them, each with its share of `minimum`."""
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
    return legs


def worst_case_size(
    token_in: Token, token_out: Token, venues: Sequence[str], memo_bytes: int, cu_price: int
) -> int:
    """The size in bytes of the largest swap transaction an order of the pair could be built
    as, plus SIZE_MARGIN_BYTES: one leg per venue of `venues` (each the largest of its kind),
    with a memo of `memo_bytes` bytes. Built from the same instructions as `build_swap`, with
    stand-in pools (chain/placeholders.py) and no I/O."""
    input_mint = Pubkey.from_string(token_in.mint)
    output_mint = Pubkey.from_string(token_out.mint)
    legs = [
        placeholder_leg(venue, input_mint, output_mint, slot) for slot, venue in enumerate(venues)
    ]
    payer = placeholder_key("payer")
    instructions = _instructions(
        payer, (input_mint, output_mint), 0, legs, "x" * memo_bytes, cu_price
    )
    return transactions.transaction_size(payer, instructions) + SIZE_MARGIN_BYTES


def _instructions(
    payer: Pubkey,
    mints: tuple[Pubkey, Pubkey],
    amount_in: int,
    legs: Sequence[transactions.SwapLeg],
    memo: str,
    compute_unit_price: int,
) -> list[Instruction]:
    """Every instruction of the swap transaction (see the module docstring)."""
    return transactions.swap_instructions(
        payer,
        *mints,
        amount_in,
        legs,
        memo,
        compute_unit_limit=COMPUTE_UNIT_LIMIT_PER_LEG * len(legs),
        compute_unit_price=compute_unit_price,
    )
