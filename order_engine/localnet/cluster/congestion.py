"""Congestion: the level in force (`quiet`, `busy`, `high`, `extreme`) and the slot auction it
calls for.

`localnet congest --level L --seconds N` sets the level from the current slot until the slot
N seconds on (persisted, so a restart keeps it); after it, the chain is quiet again. At `quiet`
there is no background demand and no auction: every ready transaction lands at its own instant,
as it always did, at no cost per slot. At the other levels each slot's block is packed by the
auction (`auction.select`) from the ready transactions and the level's background demand
(`demand.background`) under `LOCALNET_BLOCK_CU` and `LOCALNET_ACCOUNT_CU`, and what the
included background paid is recorded with the slot's fees (`fees.FeeHistory`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from order_engine.localnet.clock import slot_at, slot_start_ms
from order_engine.localnet.cluster import demand
from order_engine.localnet.cluster.auction import Offer, select
from order_engine.localnet.cluster.demand import LEVELS, QUIET
from order_engine.localnet.cluster.fees import FeeHistory

if TYPE_CHECKING:
    from order_engine.localnet.cluster.bank import Bank

# The seeded SOL/USDC pools of both venues: where background demand concentrates.
HOT_POOLS = ("raydium:SOL-USDC", "meteora:SOL-USDC")


class Congestion:
    """The level window and the contested slots' auction."""

    def __init__(
        self, bank: Bank, fees: FeeHistory, block_cu: int, account_cu: int, slot_ms: int
    ) -> None:
        self._bank = bank  # its batch persists the window
        self._fees = fees
        self.block_cu = block_cu
        self.account_cu = account_cu
        self._slot_ms = slot_ms
        self._window: tuple[str, int, int] | None = None  # (level, from slot, until slot)
        self._hot_accounts: list[tuple[str, ...]] | None = None

    def load(self, meta: dict[str, Any]) -> None:
        window = meta.get("level")
        self._window = None if window is None else (window[0], window[1], window[2])

    def set_level(self, level: str, now_ms: int, seconds: int) -> tuple[int, int]:
        """`level` from the current slot for `seconds` (rounded to whole slots, at least one):
        (its first slot's start, its end) in ms."""
        if level not in demand.LEVEL_NAMES:
            raise ValueError(f"level must be one of {', '.join(demand.LEVEL_NAMES)}")
        first = slot_at(now_ms, self._slot_ms)
        until = max(slot_at(now_ms + seconds * 1000, self._slot_ms), first + 1)
        self._window = None if level == QUIET else (level, first, until)
        self._bank.batch.meta["level"] = None if self._window is None else list(self._window)
        return slot_start_ms(first, self._slot_ms), slot_start_ms(until, self._slot_ms)

    def level_at(self, slot: int) -> str:
        window = self._window
        if window is not None and window[1] <= slot < window[2]:
            return window[0]
        return QUIET

    def contested(self, slot: int) -> bool:
        return self.level_at(slot) != QUIET

    def quiet_until(self, slot: int, current: int) -> int:
        """The first slot from `slot` on (at most `current`) that is contested."""
        window = self._window
        if window is None or slot >= window[2] or window[1] >= current:
            return current
        return max(window[1], slot)

    def status(self, now_ms: int) -> dict[str, Any]:
        slot = slot_at(now_ms, self._slot_ms)
        level = self.level_at(slot)
        until = None if level == QUIET or self._window is None else self._window[2]
        return {
            "level": level,
            "untilMs": None if until is None else slot_start_ms(until, self._slot_ms),
            "blockCu": self.block_cu,
            "accountCu": self.account_cu,
        }

    def auction(self, seed: int, slot: int, offers: Sequence[Offer]) -> list[Offer]:
        """Pack the slot: the offers it includes, in block order; the background it includes
        is recorded with the slot's fees (the real ones are when they land)."""
        level = LEVELS[self.level_at(slot)]
        hot = self.hot_accounts()
        bids = demand.background(seed, slot, level, self.block_cu, self.account_cu, len(hot))
        chosen, bids_in = select(offers, bids, hot, self.block_cu, self.account_cu)
        fees = self._fees.slot(slot)
        for bid in bids_in:
            fees.paid(bid.cu_price, hot[bid.hot] if bid.hot >= 0 else ())
            if bid.tip:
                fees.tips.append(bid.tip)
        return chosen

    def hot_accounts(self) -> list[tuple[str, ...]]:
        """The writable accounts every swap on a hot pool locks: the pool, its vaults, its
        observation (CPMM) or oracle (DLMM)."""
        if self._hot_accounts is None:
            found = []
            for pool_id in HOT_POOLS:
                record = self._bank.records.get(pool_id)
                if record is not None:
                    found.append(tuple(v for k, v in record.expected.items() if k in _WRITTEN))
            self._hot_accounts = found
        return self._hot_accounts


_WRITTEN = frozenset({"pool", "vault_x", "vault_y", "observation", "oracle"})
