"""One attempt's swap transaction: a route decision turned into signed instructions, each leg
with its share of the order's minimum (the chain refuses a leg that pays less); what decides
its compute units and its fee market; and the largest transaction an order could ever need,
which intake checks before accepting it.

The signed transaction and intake's check come from one list of instructions
(`tx.swap_instructions`): an instruction added to the swap (a protected send's tip, say) is
counted by intake's check without another change.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from order_engine.chain import tx as transactions
from order_engine.chain.block_engine import MIN_TIP_LAMPORTS
from order_engine.chain.placeholders import placeholder_key, placeholder_leg
from order_engine.domain.amounts import leg_minimums
from order_engine.domain.errors import SwapNotBuildable
from order_engine.domain.tokens import Token
from order_engine.routing import RouteDecision

# What a draft is simulated with: Solana's most per transaction, so that no simulation fails on
# its budget (agave `compute-budget` MAX_COMPUTE_UNIT_LIMIT).
MAX_COMPUTE_UNIT_LIMIT = 1_400_000
# The most legs a route has: the router splits an order across two pools at most
# (routing/decide.py, `split_legs`).
MAX_LEGS = 2
# What the worst case below does not count, in bytes. It counts every variant the builder
# makes: the most legs, each the largest kind of leg (a DLMM swap with the most bin arrays),
# wSOL wrap and unwrap when SOL is either side, the tip of a protected send, the memo, the
# compute-budget instructions; a stand-in leg names as many accounts, and as many new ones, as
# a real one. So nothing is left today. Raise it by what a variant the stand-ins cannot express
# adds: a Token-2022 mint's program in a Raydium leg, or a DLMM bitmap-extension account, is one
# more key, 33 bytes.
SIZE_MARGIN_BYTES = 0
# A memo's longest form besides the client's id: the order's own id, a UUID (Runner.run).
ORDER_ID_MEMO_BYTES = 36


def swap_legs(
    token_in: Token, token_out: Token, decision: RouteDecision, minimum: int
) -> list[transactions.SwapLeg]:
    """`decision`'s legs as the transaction's, each with its share of `minimum`."""
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


def swap_shape(legs: list[transactions.SwapLeg], memo: str, tipped: bool) -> tuple[Hashable, ...]:
    """What decides the compute units a swap consumes, as far as the engine can tell before
    running it: each leg's pool and direction and its amount to within an eighth of an octave
    (a program's arithmetic grows with its operands, a DLMM leg crosses more bins for more),
    the memo's length and whether it carries a tip."""
    return (
        tuple(
            (leg.venue, str(leg.pool), str(leg.input_mint), _eighth_octave(leg.amount_in))
            for leg in legs
        ),
        len(memo.encode()),
        tipped,
    )


def _eighth_octave(amount: int) -> tuple[int, int]:
    bits = amount.bit_length()
    return bits, (amount >> max(bits - 4, 0)) & 0b111


def writable_pool_accounts(legs: list[transactions.SwapLeg]) -> list[str]:
    """The pool accounts the swap write-locks (pool, vaults or reserves, observation or
    oracle): the accounts whose fee market decides its price, not the wallet's own."""
    accounts: list[Pubkey] = []
    for leg in legs:
        accounts.append(leg.pool)
        if leg.cpmm_state is not None:
            state = leg.cpmm_state
            accounts += [state.token_0_vault, state.token_1_vault, state.observation_key]
        elif leg.lb_pair is not None:
            pair = leg.lb_pair
            accounts += [pair.reserve_x, pair.reserve_y, pair.oracle]
    return [str(account) for account in accounts]


def build_swap(
    *,
    wallet: Keypair,
    legs: list[transactions.SwapLeg],
    amount_in: int,
    blockhash: str,
    memo: str,
    limit: int,
    price: int,
    tip: tuple[str, int] | None,
    signed: bool = True,
) -> VersionedTransaction:
    """The transaction swapping `amount_in` along `legs`, with `memo` on chain (the client's
    order id, else ours: see Runner.run), its compute budget and its tip (if any); unsigned
    (`signed=False`) for a simulation. Fails for good (no retry can cure it) with
    `TransactionTooLarge` when it exceeds a packet, and `SwapNotBuildable` when the builder
    refuses the legs."""
    try:
        instructions = transactions.swap_instructions(
            wallet.pubkey(),
            legs[0].input_mint,
            legs[0].output_mint,
            amount_in,
            legs,
            memo,
            compute_unit_limit=limit,
            compute_unit_price=price,
            tip=None if tip is None else (Pubkey.from_string(tip[0]), tip[1]),
        )
    except ValueError as exc:  # the same route is refused the same way at every attempt
        raise SwapNotBuildable(f"the swap's instructions cannot be built: {exc}") from exc
    return transactions.sign_transaction(wallet, Hash.from_string(blockhash), instructions, signed)


def worst_case_size(
    token_in: Token, token_out: Token, venues: Sequence[str], memo_bytes: int, tipped: bool
) -> int:
    """The size in bytes of the largest swap transaction an order of the pair could be built
    as, plus SIZE_MARGIN_BYTES: one leg per venue of `venues` (each the largest of its kind),
    with a memo of `memo_bytes` bytes and, when `tipped`, a protected send's tip. Built from the
    same instructions as `build_swap`, with stand-in pools (chain/placeholders.py) and no I/O."""
    input_mint = Pubkey.from_string(token_in.mint)
    output_mint = Pubkey.from_string(token_out.mint)
    legs = [
        placeholder_leg(venue, input_mint, output_mint, slot) for slot, venue in enumerate(venues)
    ]
    payer = placeholder_key("payer")
    instructions = transactions.swap_instructions(
        payer,
        input_mint,
        output_mint,
        0,
        legs,
        "x" * memo_bytes,
        compute_unit_limit=MAX_COMPUTE_UNIT_LIMIT,
        compute_unit_price=0,
        tip=(placeholder_key("tip account"), MIN_TIP_LAMPORTS) if tipped else None,
    )
    return transactions.transaction_size(payer, instructions) + SIZE_MARGIN_BYTES
