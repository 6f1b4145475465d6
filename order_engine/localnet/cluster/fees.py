"""What recent blocks paid: `getRecentPrioritizationFees` and the block engine's tip floor.

Per slot, the minimum compute unit price of the transactions it included (background or real),
and for each account they write-locked the minimum price among those writing it, as agave's
`PrioritizationFeeCache` keeps them (runtime/src/prioritization_fee_cache.rs): a slot's fee for
a set of accounts is max(block minimum, each account's minimum), 0 for a slot where nothing
paid. When a slot is finished, accounts whose minimum is not above the block's are dropped, as
agave prunes them: they cannot change an answer. Also per slot, the tips its landed bundles
paid, from which the tip floor is computed. The last 150 slots are kept, and persisted as each
slot finishes (`store.py`'s fee_slots), so a restart answers the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from order_engine.localnet.cluster.bank import Bank

WINDOW = 150  # agave's MAX_NUM_RECENT_BLOCKS
TIP_PERCENTILES = (25, 50, 75, 95, 99)
EMA_SLOTS = 16  # the tip floor's moving average weighs a slot's median 1/16


class SlotFees:
    """One slot's minimum price, per-account minimums and landed tips."""

    __slots__ = ("minimum", "accounts", "tips")

    def __init__(
        self,
        minimum: int | None = None,
        accounts: dict[str, int] | None = None,
        tips: list[int] | None = None,
    ) -> None:
        self.minimum = minimum
        self.accounts = accounts if accounts is not None else {}
        self.tips = tips if tips is not None else []

    def paid(self, price: int, writable: Iterable[str]) -> None:
        if self.minimum is None or price < self.minimum:
            self.minimum = price
        accounts = self.accounts
        for account in writable:
            known = accounts.get(account)
            if known is None or price < known:
                accounts[account] = price

    def prune(self) -> None:
        floor = self.minimum or 0
        self.accounts = {a: p for a, p in self.accounts.items() if p > floor}

    def fee(self, addresses: Sequence[str]) -> int:
        fee = self.minimum or 0
        for address in addresses:
            fee = max(fee, self.accounts.get(address, 0))
        return fee

    def to_json(self, slot: int) -> dict[str, Any]:
        return {"slot": slot, "min": self.minimum, "accounts": self.accounts, "tips": self.tips}


class FeeHistory:
    """The last `WINDOW` slots' fees and tips."""

    def __init__(self, bank: Bank) -> None:
        self._bank = bank  # its batch persists finished slots
        self._slots: dict[int, SlotFees] = {}
        self._open: set[int] = set()  # slots with records not yet finished and persisted

    def load(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self._slots[record["slot"]] = SlotFees(
                record["min"], dict(record["accounts"]), list(record["tips"])
            )

    def slot(self, slot: int) -> SlotFees:
        fees = self._slots.get(slot)
        if fees is None:
            fees = self._slots[slot] = SlotFees()
        self._open.add(slot)
        return fees

    def finish(self, end: int) -> None:
        """Every slot before `end` is over: prune and persist its record, forget old ones."""
        batch = self._bank.batch
        for slot in [s for s in self._open if s < end]:
            self._open.discard(slot)
            fees = self._slots[slot]
            fees.prune()
            batch.fee_slots[slot] = fees.to_json(slot)
        floor = end - WINDOW
        if any(s < floor for s in self._slots):
            self._slots = {s: f for s, f in self._slots.items() if s >= floor}
            batch.fee_floor = floor

    def recent(self, current: int, addresses: Sequence[str]) -> list[dict[str, int]]:
        """`getRecentPrioritizationFees`: the last `WINDOW` finished slots, oldest first."""
        answer = []
        for slot in range(max(current - WINDOW, 0), current):
            fees = self._slots.get(slot)
            fee = 0 if fees is None else fees.fee(addresses)
            answer.append({"slot": slot, "prioritizationFee": fee})
        return answer

    def tip_floor(self, current: int, now_ms: int) -> dict[str, Any]:
        """Landed tips' percentiles (lamports) over the last `WINDOW` slots, and a moving
        average of each slot's median: the block engine's tip floor, before its SOL units."""
        tips: list[int] = []
        ema: int | None = None
        for slot in range(max(current - WINDOW, 0), current):
            fees = self._slots.get(slot)
            if fees is None or not fees.tips:
                continue
            tips.extend(fees.tips)
            ordered = sorted(fees.tips)
            median = ordered[(len(ordered) - 1) // 2]
            ema = median if ema is None else ema + (median - ema) // EMA_SLOTS
        tips.sort()
        floor: dict[str, Any] = {
            "time": datetime.fromtimestamp(now_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        }
        for pct in TIP_PERCENTILES:
            floor[f"landed_tips_{pct}th_percentile"] = _percentile(tips, pct)
        floor["ema_landed_tips_50th_percentile"] = ema
        return floor


def _percentile(ordered: list[int], pct: int) -> int | None:
    """Nearest-rank percentile of sorted values; None when there are none."""
    if not ordered:
        return None
    rank = max(-(-pct * len(ordered) // 100), 1)
    return ordered[rank - 1]
