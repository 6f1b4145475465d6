"""The searcher: a sandwich bot that watches public transactions (`localnet mev --rate R`).

For a share R of the swaps sent with `sendTransaction` (bundles are never seen), when they land
the searcher front-runs each swap leg in its own direction, sized so the victim still just
fills at its `minimum_amount_out` (the largest front-run that leaves the victim's output at or
above its minimum, found by bisection on the pool's exact math), lets the victim run, then
back-runs, selling what it bought. It does so only when the round trip pays after both legs'
pool fees (the pool math charges them). Its swaps are real trades on the pools, from a wallet
the localnet holds (its token accounts show the profit). Each sandwich is reported with the
value taken: what the victim's leg would have received alone at that point minus what it got.
The rate and the report persist (meta `mev_rate`, table sandwiches).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from order_engine.chain.programs import TOKEN_ACCOUNT_RENT, WSOL_MINT, associated_token_address
from order_engine.localnet import pools
from order_engine.localnet.cluster.bank import Bank, PoolRecord
from order_engine.localnet.cluster.faults import roll
from order_engine.localnet.cluster.sent import Sent
from order_engine.localnet.execution import FAUCET_TOKEN_ATOMS, ExecutionResult
from order_engine.localnet.execution.state import UserToken

MAX_STEPS = 128  # bisection and doubling steps per leg (amounts are u64)


@dataclass(frozen=True)
class LegPlan:
    """One sandwiched swap leg: the pool before the front-run and the front-run itself."""

    record: PoolRecord
    swap_for_y: bool
    before: pools.Pool
    alone_out: int  # the victim's output had it run alone at that point
    front_in: int
    front_out: int
    input_mint: str
    output_mint: str


class Searcher:
    """The sandwich bot: its rate, its wallet and its report."""

    def __init__(self, bank: Bank, seed: int) -> None:
        self._bank = bank  # its batch persists the rate, the report and the wallet's balances
        self._seed = seed
        self.rate = Decimal(0)
        self.report: list[dict[str, Any]] = []
        secret = hashlib.sha256(f"{seed}:searcher".encode()).digest()
        self.wallet = Keypair.from_seed(secret).pubkey()

    def load(self, meta: dict[str, Any], sandwiches: list[dict[str, Any]]) -> None:
        self.rate = Decimal(meta.get("mev_rate", "0"))
        self.report = list(sandwiches)

    def set_rate(self, rate: Decimal) -> None:
        self.rate = rate
        self._bank.batch.meta["mev_rate"] = str(rate)

    def front_run(self, sent: Sent, at_ms: int) -> list[LegPlan] | None:
        """Roll for the transaction, plan each leg and trade the front-runs; None if it is
        left alone."""
        if sent.instructions is None:
            return None
        rng = random.Random(f"{self._seed}:mev:{sent.signature}")
        if not roll(rng, self.rate):
            return None
        plans = []
        for record, swap_for_y, ix in self._bank.swaps(sent.instructions):
            minimum = getattr(ix, "minimum_amount_out", None)
            if minimum is None:
                minimum = ix.min_amount_out
            plan = _plan(record, swap_for_y, ix.amount_in, minimum, at_ms // 1000)
            if plan is not None:
                plans.append(plan)
        for plan in plans:
            front = pools.swap(plan.before, plan.front_in, plan.swap_for_y, at_ms // 1000)
            self._bank.set_pool(plan.record, front.pool)
        return plans or None

    def undo(self, plans: list[LegPlan]) -> None:
        """The victim failed after all: the searcher's simulation would not have sent it."""
        for plan in plans:
            self._bank.set_pool(plan.record, plan.before)

    def back_run(
        self, plans: list[LegPlan], victim: ExecutionResult, signature: str, slot: int, at_ms: int
    ) -> None:
        """After the victim: sell what each front-run bought, and report the sandwich."""
        for plan in plans:
            now_s = at_ms // 1000
            after = pools.swap(plan.record.pool, plan.front_out, not plan.swap_for_y, now_s)
            self._bank.set_pool(plan.record, after.pool)
            self._credit(plan.input_mint, after.amount_out - plan.front_in)
            actual = sum(leg.amount_out for leg in victim.legs if leg.pool == plan.record.address)
            entry = {
                "victim": signature,
                "slot": slot,
                "pool": plan.record.address,
                "poolId": plan.record.pool_id,
                "valueTakenAtoms": plan.alone_out - actual,
                "outputMint": plan.output_mint,
                "outputAloneAtoms": plan.alone_out,
                "outputAtoms": actual,
                "frontRunAtoms": plan.front_in,
                "profitAtoms": after.amount_out - plan.front_in,
                "inputMint": plan.input_mint,
            }
            self.report.append(entry)
            self._bank.batch.sandwiches.append((len(self.report), entry))

    def _credit(self, mint: str, delta: int) -> None:
        """The searcher's token account of `mint` moves by `delta` (its profit)."""
        address = str(associated_token_address(self.wallet, Pubkey.from_string(mint)))
        account = self._bank.token_accounts.get(address)
        if account is None:
            native = mint == str(WSOL_MINT)
            lamports = TOKEN_ACCOUNT_RENT + (FAUCET_TOKEN_ATOMS if native else 0)
            account = UserToken(mint, str(self.wallet), FAUCET_TOKEN_ATOMS, lamports, native)
        lamports = account.lamports + delta if account.native else account.lamports
        account = replace(account, amount=account.amount + delta, lamports=lamports)
        self._bank.token_accounts[address] = account
        self._bank.batch.token_accounts[address] = account.to_json()


def _plan(
    record: PoolRecord, swap_for_y: bool, amount_in: int, minimum: int, now_s: int
) -> LegPlan | None:
    """The largest front-run that leaves the victim its minimum, if the round trip pays."""
    pool = record.pool
    alone = _out(pool, amount_in, swap_for_y, now_s)
    if alone is None or alone < minimum or amount_in <= 0:
        return None

    def victim_fills(front_in: int) -> bool:
        try:
            front = pools.swap(pool, front_in, swap_for_y, now_s)
            after = pools.swap(front.pool, amount_in, swap_for_y, now_s)
        except pools.VenueMathError:
            return False
        return after.amount_out >= minimum

    low, high = 0, amount_in
    for _ in range(MAX_STEPS):  # double until the victim would fail
        if not victim_fills(high) or high >= 1 << 64:
            break
        low, high = high, high * 2
    for _ in range(MAX_STEPS):  # then bisect: `low` fills, `high` does not
        if high - low <= 1:
            break
        middle = (low + high) // 2
        low, high = (middle, high) if victim_fills(middle) else (low, middle)
    return _priced(record, swap_for_y, pool, alone, low, amount_in, now_s)


def _priced(
    record: PoolRecord,
    swap_for_y: bool,
    pool: pools.Pool,
    alone: int,
    front_in: int,
    amount_in: int,
    now_s: int,
) -> LegPlan | None:
    if front_in <= 0:
        return None
    try:
        front = pools.swap(pool, front_in, swap_for_y, now_s)
        victim = pools.swap(front.pool, amount_in, swap_for_y, now_s)
        back = pools.swap(victim.pool, front.amount_out, not swap_for_y, now_s)
    except pools.VenueMathError:
        return None
    if back.amount_out <= front_in:
        return None  # the round trip does not pay the two legs' fees
    mint_in, mint_out = (
        (record.mint_x, record.mint_y) if swap_for_y else (record.mint_y, record.mint_x)
    )
    return LegPlan(record, swap_for_y, pool, alone, front_in, front.amount_out, mint_in, mint_out)


def _out(pool: pools.Pool, amount_in: int, swap_for_y: bool, now_s: int) -> int | None:
    try:
        return pools.swap(pool, amount_in, swap_for_y, now_s).amount_out
    except pools.VenueMathError:
        return None
