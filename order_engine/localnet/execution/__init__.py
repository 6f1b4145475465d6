"""Executing a decoded transaction against the cluster's state, all or nothing.

The localnet vendors no program binaries: each instruction the engine sends is emulated here
with the programs' documented behaviour ([SPL], [RAY], [MET]; keys in `order_engine.localnet`)
and the exact pool math:
compute budget (fees only), ATA CreateIdempotent, System Transfer, Token SyncNative and
CloseAccount, Raydium CPMM `swap_base_input` (6005 below the minimum) and Meteora DLMM `swap`
(6003 below the minimum), Memo.

Writes go to an `Overlay` over the cluster's state. The fee is charged first in its own layer;
if an instruction fails, only that layer is kept (a failed transaction still lands and still
pays its fee, as on Solana), otherwise the whole overlay is applied by the caller.

Token accounts start empty, as on Solana. Funds come from the localnet's faucet (the bank's
`fund_wallet`): a wallet seen for the first time gets `FAUCET_LAMPORTS` and a token account of
every listed mint holding `FAUCET_TOKEN_ATOMS`, before its first transaction runs, so funds
never run out in normal use while every transfer is tracked and balanced (and a transaction's
balances show only what it moved).

Modules: `state` (token accounts, the `State` this reads, the `Overlay` it writes), `programs`
(the runner: one handler per instruction), `errors` (the programs' error codes and texts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from order_engine.chain.programs import LAMPORTS_PER_SIGNATURE, MICRO_LAMPORTS_PER_LAMPORT
from order_engine.localnet.execution.errors import InstructionFailed, display_instruction_error
from order_engine.localnet.execution.programs import Leg, Runner
from order_engine.localnet.execution.state import Overlay, State

FAUCET_LAMPORTS = 10**18  # a billion SOL; fits a u64
FAUCET_TOKEN_ATOMS = 10**18

# Rough compute-unit costs per instruction, for `unitsConsumed` and the logs.
_UNITS = {
    "ComputeUnitLimit": 150,
    "ComputeUnitPrice": 150,
    "CreateAssociatedTokenAccount": 4_500,
    "SystemTransfer": 150,
    "SyncNative": 3_000,
    "CloseAccount": 2_900,
    "CpmmSwapBaseInput": 38_000,
    "DlmmSwap": 62_000,
    "Memo": 600,
}


@dataclass
class ExecutionResult:
    err: Any | None
    logs: list[str]
    units: int
    fee: int
    legs: list[Leg]
    overlay: Overlay  # what to apply: everything on success, the fee alone on failure
    amount_in: int = 0
    amount_out: int = 0
    input_mint: str | None = None
    output_mint: str | None = None


def fee_for(num_signatures: int, instructions: Sequence[Any]) -> tuple[int, int]:
    """(lamports fee, compute-unit limit): 5000 per signature plus the priority fee
    ceil(price × limit / 1e6) (https://solana.com/docs/core/fees)."""
    limit, price = 200_000, 0
    for ix in instructions:
        name = type(ix).__name__
        if name == "ComputeUnitLimit":
            limit = ix.units
        elif name == "ComputeUnitPrice":
            price = ix.micro_lamports
    priority = -(-price * limit // MICRO_LAMPORTS_PER_LAMPORT)
    return num_signatures * LAMPORTS_PER_SIGNATURE + priority, limit


def execute(
    state: State,
    payer: str,
    signers: frozenset[str],
    num_signatures: int,
    instructions: Sequence[Any],
    now_s: int,
    program_ids: Sequence[str],
) -> ExecutionResult:
    """Run the instructions in order; see the module docstring for the all-or-nothing rule.

    `program_ids[i]` is the base58 program id of instruction i (for the logs).
    """
    fee, limit = fee_for(num_signatures, instructions)
    fee_layer = Overlay(state)
    balance = fee_layer.wallet(payer)
    if balance < fee:
        return ExecutionResult("InsufficientFundsForFee", [], 0, fee, [], fee_layer)
    fee_layer.lamports[payer] = balance - fee
    runner = Runner(fee_layer.copy(), payer, signers, now_s)
    logs: list[str] = []
    units = 0
    for index, ix in enumerate(instructions):
        name = type(ix).__name__
        program = program_ids[index]
        cost = _UNITS.get(name, 1_000)
        logs.append(f"Program {program} invoke [1]")
        try:
            runner.run(index, name, ix, logs)
        except InstructionFailed as failure:
            units += cost
            logs.extend(failure.logs)
            logs.append(_consumed(program, cost, limit - units + cost))
            logs.append(f"Program {program} failed: {display_instruction_error(failure.error)}")
            outcome = ExecutionResult(failure.transaction_error, logs, units, fee, [], fee_layer)
            outcome.amount_in = runner.requested_in
            outcome.input_mint, outcome.output_mint = runner.mints()
            return outcome
        units += cost
        if name not in ("ComputeUnitLimit", "ComputeUnitPrice", "Memo"):
            logs.append(_consumed(program, cost, limit - units + cost))
        logs.append(f"Program {program} success")
    input_mint, output_mint = runner.mints()
    amount_out = sum(leg.amount_out for leg in runner.legs if leg.output_mint == output_mint)
    return ExecutionResult(
        None,
        logs,
        units,
        fee,
        runner.legs,
        runner.overlay,
        amount_in=runner.requested_in,
        amount_out=amount_out,
        input_mint=input_mint,
        output_mint=output_mint,
    )


def _consumed(program: str, units: int, budget: int) -> str:
    return f"Program {program} consumed {units} of {budget} compute units"
