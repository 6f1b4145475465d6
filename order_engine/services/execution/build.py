"""Signing one version of an order's swap: size its compute limit from what such swaps consume,
price it from the chain within the order's cap, tip it if protected, sign.

The limit is the units a swap of the same shape consumed (`landing.UnitTable`: the latest
landing's `meta.computeUnitsConsumed`) times COMPUTE_UNIT_MARGIN_PCT. A shape not seen yet is
simulated first: its draft (the final transaction with Solana's maximum limit, no price and the
least tip, unsigned) goes to `simulateTransaction` (one round trip), its `unitsConsumed` is the
shape's first figure, and a program error (slippage, 6005/6003) sends nothing and fails the
attempt as a landed error would (`program_error`: the slippage re-quote policy, `fail.py`); the
signed transaction is then the draft with its budget rewritten (`tx.with_budget`). The price
(`FeeOracle`) and the tip floor are read at most once per slot per process.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from order_engine.chain import tx as transactions
from order_engine.chain.client import Blockhash, SignatureStatus, program_error
from order_engine.domain import event_data
from order_engine.domain.errors import BlockhashExpired, ExecutionError
from order_engine.infra import metrics
from order_engine.infra.db import unit_of_work
from order_engine.repositories.transitions import lease_expiry
from order_engine.routing import RouteDecision
from order_engine.services.execution import landing
from order_engine.services.execution.attempt import Attempt, LeaseLost, slots
from order_engine.services.execution.steps import Context
from order_engine.services.execution.swap_transaction import (
    MAX_COMPUTE_UNIT_LIMIT,
    build_swap,
    swap_legs,
    swap_shape,
    writable_pool_accounts,
)


@dataclass(frozen=True)
class Built:
    """A signed swap, and what recording it writes: its `building` event and the columns."""

    blockhash: Blockhash
    signature: str
    encoded: str
    slots_left: int
    plan: landing.Plan
    event: dict[str, Any]
    values: dict[str, Any]
    shape: Hashable  # what its compute units are learned under (`landing.UnitTable`)


class BundleFailed(ExecutionError):
    """The block engine reports the transaction's bundle Failed, for no reason the chain still
    shows: it never landed and charged nothing; a new version may go at once."""

    code, retryable = "BUNDLE_FAILED", True


def bundle_failure(ctx: Context, attempt: Attempt, status: SignatureStatus) -> ExecutionError:
    """What a bundle the block engine reports Failed means for the attempt. It never lands
    (the block engine answers a re-send of the same bytes with that status) and charged
    nothing; the order's transaction is marked as one that can no longer land, so the next
    attempt builds a new version at once instead of re-broadcasting it. Its error is what the
    chain says of the same bytes now (a simulation: slippage follows the re-quote policy, an
    expired blockhash is retried), else BUNDLE_FAILED (retried)."""
    order = attempt.order
    with unit_of_work(ctx.session):
        if not ctx.orders.mark_unlandable(order.id, attempt.executor, status.signature):
            raise LeaseLost(f"order {order.id}: lease lost before recording its failed bundle")
    attempt.last_valid_height = 0
    plan = attempt.plan or landing.plan_of(order)
    if plan is not None:
        attempt.report = landing.report(plan, None)
        metrics.transaction_not_landed(plan.via, "bundle_failed")
    encoded = attempt.signed or order.signed_tx
    err = ctx.chain.simulate(encoded).err if encoded else None
    if over_budget(err) and attempt.shape is not None:
        ctx.units.forget(attempt.shape)
        return ComputeBudgetExceeded(f"{status.signature} would run out of compute units")
    if err is None:
        return BundleFailed(f"the block engine reports the bundle of {status.signature} failed")
    return simulation_error(err)


class ComputeBudgetExceeded(ExecutionError):
    """A swap ran out of its compute unit limit (it landed and paid): its shape's figure is
    forgotten and the next attempt simulates anew."""

    code, retryable = "COMPUTE_BUDGET_EXCEEDED", True


def over_budget(err: Any) -> bool:
    """Whether a transaction error is `{"InstructionError": [i, "ComputationalBudgetExceeded"]}`."""
    detail = err.get("InstructionError") if isinstance(err, dict) else None
    return isinstance(detail, list) and detail[1:] == ["ComputationalBudgetExceeded"]


def simulation_error(err: Any) -> ExecutionError:
    """The engine's error for a draft the chain would refuse."""
    if err == "BlockhashNotFound":
        return BlockhashExpired("the node no longer knows the draft's blockhash")
    return program_error(err)


class Builder:
    """Builds the signed version of an attempt's swap (`Runner` records and sends it)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def build(
        self,
        attempt: Attempt,
        decision: RouteDecision,
        route: dict[str, Any],
        minimum: int,
        memo: str,
    ) -> Built:
        """Sign the swap of `decision` on the newest blockhash, with its `building` event and
        the order's columns to record with it."""
        ctx = self.ctx
        options = landing.Options.of(attempt.order, ctx.settings)
        blockhash = ctx.chain.latest_blockhash()
        legs = swap_legs(attempt.token_in, attempt.token_out, decision, minimum)
        tip_account = self._tip_account(attempt) if options.protected else None
        shape = swap_shape(legs, memo, tip_account is not None)

        def swap(limit: int, price: int, tip: int, signed: bool = True) -> Any:
            return build_swap(
                wallet=ctx.wallet,
                legs=legs,
                amount_in=attempt.amount_in,
                blockhash=blockhash.value,
                memo=memo,
                limit=limit,
                price=price,
                tip=None if tip_account is None else (tip_account, tip),
                signed=signed,
            )

        draft, units, sent_slot = None, ctx.units.get(shape), blockhash.slot
        if units is None:  # a shape not seen yet: simulate the draft, once for all waiting
            with ctx.units.simulation_of(shape):
                units = ctx.units.get(shape)
                if units is None:
                    draft = swap(MAX_COMPUTE_UNIT_LIMIT, 0, landing.MIN_TIP_LAMPORTS, False)
                    simulation = ctx.chain.simulate(transactions.encode_transaction(draft))
                    if simulation.err is not None:
                        raise simulation_error(simulation.err)
                    units, sent_slot = simulation.units_consumed, simulation.slot
                    ctx.units.learn(shape, units)
        plan = self._plan(attempt, options, legs, blockhash.slot, units, sent_slot)
        if draft is None:
            tx = swap(plan.limit, plan.price, plan.tip)
        else:
            tip = plan.tip if tip_account is not None else None
            tx = transactions.with_budget(draft, ctx.wallet, plan.limit, plan.price, tip)
        signature = transactions.signature_of(tx)
        encoded = transactions.encode_transaction(tx)
        slots_left = blockhash.last_valid_block_height - blockhash.slot + 1
        event, values = self._records(attempt, decision, route, minimum, blockhash, plan)
        event |= {"txHash": signature}
        values |= {"tx_hash": signature, "signed_tx": encoded}
        return Built(blockhash, signature, encoded, slots_left, plan, event, values, shape)

    def _tip_account(self, attempt: Attempt) -> str:
        """One of the 8 at random per order and version (spreading the write locks on them),
        drawn from the order's id so that a replay signs the same bytes."""
        pick = random.Random(f"{attempt.order.id}:{attempt.order.attempts}")
        return pick.choice(self.ctx.chain.block_engine.tip_accounts())

    def _records(
        self,
        attempt: Attempt,
        decision: RouteDecision,
        route: dict[str, Any],
        minimum: int,
        blockhash: Blockhash,
        plan: landing.Plan,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The `building` event and the order's columns recording the version signed (its
        signature and bytes are the caller's to add)."""
        slots_left = blockhash.last_valid_block_height - blockhash.slot + 1
        event = event_data.building(
            dex=decision.dex,
            legs=route["legs"],
            token_out=attempt.token_out,
            quoted=decision.amount_out,
            minimum=minimum,
            slippage_bps=attempt.order.slippage_bps,
            signature="",
            blockhash=blockhash.value,
            last_valid_block_height=blockhash.last_valid_block_height,
            expires_at=self.ctx.now() + slots(slots_left),
            compute_unit_limit=plan.limit,
            compute_unit_price=plan.price,
        )
        event |= {"fees": plan.fees(), "landing": plan.landing()}
        values = {
            "min_amount_out": attempt.token_out.from_atoms(minimum),
            "tx_last_valid_height": blockhash.last_valid_block_height,
            "fees": plan.fees(),
            "landing": plan.landing(),
            # A stalled executor that lost its lease must not send: the lease is renewed in
            # this same transition, right before the send.
            "lease_until": lease_expiry(self.ctx.settings.order_lease_s),
        }
        return event, values

    def _plan(
        self,
        attempt: Attempt,
        options: landing.Options,
        legs: list[transactions.SwapLeg],
        slot: int,
        units: int,
        sent_slot: int,
    ) -> landing.Plan:
        settings = self.ctx.settings
        limit = landing.compute_limit(units, settings.compute_unit_margin_pct)
        versions, previous_price, previous_tip = landing.previous_version(attempt.order)
        escalation = settings.priority_fee_escalation_pct
        if options.fixed_price is not None:
            price = options.fixed_price
        else:
            accounts = writable_pool_accounts(legs)
            price = self.ctx.fee_oracle.price(accounts, slot)
            price = landing.escalated(price, previous_price, escalation)
        tip = 0
        if options.protected:
            floor = self.ctx.chain.block_engine.tip_floor(slot)
            tip = landing.escalated(floor[settings.tip_percentile], previous_tip, escalation)
        price, tip = landing.fit_to_cap(limit, price, tip, options.max_fee)
        via = landing.BUNDLE if options.protected else landing.RPC
        return landing.Plan(via, price, limit, tip, versions + 1, sent_slot)
