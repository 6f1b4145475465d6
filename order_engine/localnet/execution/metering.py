"""Compute metering: what each emulated instruction consumes, a transaction's limit, its fee.

Consumption per instruction, from public readings (docs/localnet.md has the table with each
figure's source):

* builtins (Compute Budget, System): 150 each, the `DEFAULT_COMPUTE_UNITS` their processors
  declare (agave `programs/compute-budget/src/lib.rs`, `programs/system/src/system_processor.rs`);
* SPL Token (the classic program): SyncNative 3,045 and CloseAccount 2,915, read from a mainnet
  transaction's logs; the ATA program's CreateIdempotent 4,338 on an existing account and 20,389
  when it creates one (mainnet logs);
* Memo v2: 1,000 plus 365 per byte, fitted to mainnet readings (12,724 for 32 bytes, 13,505 for
  34, 22,940 for 60): the program logs the memo, and logging dominates;
* Raydium CPMM `swap_base_input`: 38,500 plus 15 per bit of the amount (39,493 read on mainnet
  for a SPL-token pair); Meteora DLMM `swap`: 55,000 for a swap within one bin plus 1,500 per
  further bin crossed (mainnet readings of 54,985 to 68,341 for everyday swaps; a swap that
  walked its bin arrays to their end failed after only 30,584, so a bin costs little: the
  per-bin figure is an estimate).

The limit is SetComputeUnitLimit's, else 200,000 per instruction that is not a Compute Budget
one, capped at 1,400,000 (agave's compute budget defaults); the fee is 5,000 lamports per
signature plus ceil(limit × price / 10^6) (https://solana.com/docs/core/fees).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from order_engine.chain.programs import (
    DEFAULT_COMPUTE_UNIT_LIMIT,
    LAMPORTS_PER_SIGNATURE,
    MAX_COMPUTE_UNIT_LIMIT,
    MICRO_LAMPORTS_PER_LAMPORT,
)

BUILTIN_UNITS = 150
ATA_EXISTING_UNITS = 4_338
ATA_CREATE_UNITS = 20_389
SYNC_NATIVE_UNITS = 3_045
CLOSE_ACCOUNT_UNITS = 2_915
MEMO_BASE_UNITS = 1_000
MEMO_UNITS_PER_BYTE = 365
CPMM_SWAP_UNITS = 38_500
CPMM_UNITS_PER_AMOUNT_BIT = 15
DLMM_SWAP_UNITS = 55_000
DLMM_UNITS_PER_BIN = 1_500

COMPUTE_BUDGET = frozenset({"ComputeUnitLimit", "ComputeUnitPrice"})
# Builtins log no "consumed" line; programs deployed as BPF do (agave's log collector).
BUILTINS = COMPUTE_BUDGET | {
    "SystemTransfer",
    "CreateAccount",
    "AdvanceNonceAccount",
    "InitializeNonceAccount",
}
_FIXED = {
    "SyncNative": SYNC_NATIVE_UNITS,
    "CloseAccount": CLOSE_ACCOUNT_UNITS,
    "CreateAssociatedTokenAccount": ATA_EXISTING_UNITS,
}


@dataclass(frozen=True)
class Budget:
    """A transaction's compute budget and fee."""

    limit: int  # compute units requested (what the block is charged)
    price: int  # micro-lamports per compute unit
    fee: int  # lamports: the base fee plus the priority fee

    @property
    def priority_fee(self) -> int:
        return priority_fee(self.limit, self.price)


def priority_fee(limit: int, price: int) -> int:
    return -(-price * limit // MICRO_LAMPORTS_PER_LAMPORT)


def budget(num_signatures: int, instructions: Sequence[Any]) -> Budget:
    """The limit, the price and the fee a transaction's instructions ask for."""
    limit, price, others = None, 0, 0
    for ix in instructions:
        name = type(ix).__name__
        if name == "ComputeUnitLimit":
            limit = ix.units
        elif name == "ComputeUnitPrice":
            price = ix.micro_lamports
        else:
            others += 1
    if limit is None:
        limit = DEFAULT_COMPUTE_UNIT_LIMIT * others
    limit = min(limit, MAX_COMPUTE_UNIT_LIMIT)
    fee = num_signatures * LAMPORTS_PER_SIGNATURE + priority_fee(limit, price)
    return Budget(limit, price, fee)


def base_units(name: str, ix: Any) -> int:
    """What an instruction consumes before its outcome is known (or when it fails early)."""
    if name in BUILTINS:
        return BUILTIN_UNITS
    if name == "Memo":
        return memo_units(len(ix.text.encode("utf-8")))
    if name == "CpmmSwapBaseInput":
        return cpmm_units(ix.amount_in)
    if name == "DlmmSwap":
        return dlmm_units(0)
    return _FIXED.get(name, BUILTIN_UNITS)


def memo_units(length: int) -> int:
    return MEMO_BASE_UNITS + MEMO_UNITS_PER_BYTE * length


def cpmm_units(amount_in: int) -> int:
    return CPMM_SWAP_UNITS + CPMM_UNITS_PER_AMOUNT_BIT * amount_in.bit_length()


def dlmm_units(bins_crossed: int) -> int:
    return DLMM_SWAP_UNITS + DLMM_UNITS_PER_BIN * max(bins_crossed, 0)
