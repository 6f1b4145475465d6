"""Executing a decoded transaction against the cluster's state, all or nothing.

The localnet vendors no program binaries: each instruction the engine sends is emulated here
with the programs' documented behaviour ([SPL], [RAY], [MET]; keys in `order_engine.localnet`)
and the exact pool math:
compute budget, ATA CreateIdempotent, System Transfer, CreateAccount and the durable nonce
instructions, Token SyncNative and CloseAccount, Raydium CPMM `swap_base_input` (6005 below
the minimum) and Meteora DLMM `swap` (6003 below the minimum), Memo.

Each instruction consumes compute units (`metering`, from public readings); an instruction
that takes the transaction past its limit fails with `ComputationalBudgetExceeded`.

Writes go to an `Overlay` over the cluster's state. The fee is charged first in its own layer;
if an instruction fails, only that layer is kept (a failed transaction still lands and still
pays its fee, as on Solana), with its nonce advanced when it is a durable nonce transaction;
otherwise the whole overlay is applied by the caller.

Token accounts start empty, as on Solana. Funds come from the localnet's faucet (the bank's
`fund_wallet`): a wallet seen for the first time gets `FAUCET_LAMPORTS` and a token account of
every listed mint holding `FAUCET_TOKEN_ATOMS`, before its first transaction runs, so funds
never run out in normal use while every transfer is tracked and balanced (and a transaction's
balances show only what it moved).

Modules: `state` (token accounts, the `State` this reads, the `Overlay` it writes), `programs`
(the runner: one handler per instruction), `system` (the System program and nonce accounts),
`metering` (compute units, limits and fees), `errors` (the programs' error codes and texts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from order_engine.localnet.execution import metering, system
from order_engine.localnet.execution.errors import InstructionFailed, display_instruction_error
from order_engine.localnet.execution.programs import Leg, Runner
from order_engine.localnet.execution.state import Overlay, State

FAUCET_LAMPORTS = 10**18  # a billion SOL; fits a u64
FAUCET_TOKEN_ATOMS = 10**18


@dataclass
class ExecutionResult:
    err: Any | None
    logs: list[str]
    units: int  # compute units consumed
    fee: int
    legs: list[Leg]
    overlay: Overlay  # what to apply: everything on success, the fee alone on failure
    amount_in: int = 0
    amount_out: int = 0
    input_mint: str | None = None
    output_mint: str | None = None
    limit: int = 0  # compute units requested
    price: int = 0  # micro-lamports per compute unit


def nonce_account(instructions: Sequence[Any]) -> str | None:
    """The nonce account of a durable nonce transaction (its first instruction advances it)."""
    if instructions and type(instructions[0]).__name__ == "AdvanceNonceAccount":
        return str(instructions[0].nonce)
    return None


def execute(
    state: State,
    payer: str,
    signers: frozenset[str],
    num_signatures: int,
    instructions: Sequence[Any],
    now_s: int,
    program_ids: Sequence[str],
    blockhash: bytes = b"",
    budget: metering.Budget | None = None,
) -> ExecutionResult:
    """Run the instructions in order; see the module docstring for the all-or-nothing rule.

    `program_ids[i]` is the base58 program id of instruction i (for the logs); `blockhash` the
    bank's current one (what a nonce advances to); `budget` the instructions' own, when the
    caller read it already.
    """
    if budget is None:
        budget = metering.budget(num_signatures, instructions)
    fee_layer = Overlay(state)
    balance = fee_layer.wallet(payer)
    if balance < budget.fee:
        result = ExecutionResult("InsufficientFundsForFee", [], 0, budget.fee, [], fee_layer)
        result.limit, result.price = budget.limit, budget.price
        return result
    fee_layer.lamports[payer] = balance - budget.fee
    nonce = nonce_account(instructions)
    runner = Runner(fee_layer.copy(), payer, signers, now_s, blockhash, nonce)
    logs: list[str] = []
    units = 0
    for index, ix in enumerate(instructions):
        name = type(ix).__name__
        program = program_ids[index]
        remaining = budget.limit - units
        logs.append(f"Program {program} invoke [1]")
        try:
            cost = runner.run(index, name, ix, logs)
        except InstructionFailed as failure:
            cost = failure.units if failure.units is not None else metering.base_units(name, ix)
            if cost <= remaining:
                logs.extend(failure.logs)
                _log_failure(logs, failure, program, name, cost, remaining)
                return _failure(failure, logs, units + cost, budget, runner, fee_layer)
        if cost > remaining:
            exceeded = InstructionFailed(index, "ComputationalBudgetExceeded")
            _log_failure(logs, exceeded, program, name, remaining, remaining)
            return _failure(exceeded, logs, budget.limit, budget, runner, fee_layer)
        units += cost
        if name not in metering.BUILTINS:
            logs.append(_consumed(program, cost, remaining))
        logs.append(f"Program {program} success")
    return _success(runner, logs, units, budget)


def _log_failure(
    logs: list[str], failure: InstructionFailed, program: str, name: str, cost: int, remaining: int
) -> None:
    if name not in metering.BUILTINS or failure.error == "ComputationalBudgetExceeded":
        logs.append(_consumed(program, cost, remaining))
    logs.append(f"Program {program} failed: {display_instruction_error(failure.error)}")


def _failure(
    failure: InstructionFailed,
    logs: list[str],
    units: int,
    budget: metering.Budget,
    runner: Runner,
    fee_layer: Overlay,
) -> ExecutionResult:
    """A failed transaction: it keeps its fee, and a durable nonce still advances."""
    nonce = runner.nonce
    if nonce is not None:
        system.advance(fee_layer, nonce, runner.blockhash)
    outcome = ExecutionResult(failure.transaction_error, logs, units, budget.fee, [], fee_layer)
    outcome.amount_in = runner.requested_in
    outcome.input_mint, outcome.output_mint = runner.mints()
    outcome.limit, outcome.price = budget.limit, budget.price
    return outcome


def _success(
    runner: Runner, logs: list[str], units: int, budget: metering.Budget
) -> ExecutionResult:
    input_mint, output_mint = runner.mints()
    amount_out = sum(leg.amount_out for leg in runner.legs if leg.output_mint == output_mint)
    return ExecutionResult(
        None,
        logs,
        units,
        budget.fee,
        runner.legs,
        runner.overlay,
        amount_in=runner.requested_in,
        amount_out=amount_out,
        input_mint=input_mint,
        output_mint=output_mint,
        limit=budget.limit,
        price=budget.price,
    )


def _consumed(program: str, units: int, budget: int) -> str:
    return f"Program {program} consumed {units} of {budget} compute units"
