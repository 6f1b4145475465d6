"""The emulated programs' errors: their codes, Anchor's log lines, and the Display texts a
node puts in a failed simulation's message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from order_engine.chain.programs import METEORA_DLMM_PROGRAM, RAYDIUM_CPMM_PROGRAM

CPMM = str(RAYDIUM_CPMM_PROGRAM)
DLMM = str(METEORA_DLMM_PROGRAM)

# Error codes. Anchor custom errors start at 6000 [ANC]; SPL Token and System program errors are
# their enum indexes ([SPL] token/program/src/error.rs; the System program's SystemError).
TOKEN_INSUFFICIENT_FUNDS = 1
TOKEN_MINT_MISMATCH = 3
TOKEN_OWNER_MISMATCH = 4
TOKEN_NON_NATIVE_HAS_BALANCE = 11
TOKEN_NON_NATIVE_NOT_SUPPORTED = 19
SYSTEM_ACCOUNT_ALREADY_IN_USE = 0
SYSTEM_RESULT_WITH_NEGATIVE_LAMPORTS = 1
SYSTEM_NONCE_BLOCKHASH_NOT_EXPIRED = 7
ANCHOR_CONSTRAINT_HAS_ONE = 2001
ANCHOR_CONSTRAINT_SEEDS = 2006
ANCHOR_CONSTRAINT_ADDRESS = 2012
ANCHOR_DISCRIMINATOR_MISMATCH = 3002
ANCHOR_NOT_INITIALIZED = 3012
CPMM_NOT_APPROVED = 6000
CPMM_INVALID_INPUT = 6003
CPMM_EXCEEDED_SLIPPAGE = 6005  # [RAY error.rs] ExceededSlippage (0x1775)
CPMM_ZERO_TRADING_TOKENS = 6006
CPMM_INVALID_VAULT = 6008
CPMM_INSUFFICIENT_VAULT = 6012
DLMM_EXCEEDED_SLIPPAGE = 6003  # [MET IDL] ExceededAmountSlippageTolerance (0x1773)
DLMM_NO_LIQUIDITY = 6012  # PairInsufficientLiquidity
DLMM_INSUFFICIENT_OUT_AMOUNT = 6039

_ERROR_NAMES = {
    CPMM: {
        6000: ("NotApproved", "Not approved"),
        6003: ("InvalidInput", "Input account owner is not the program address"),
        6005: ("ExceededSlippage", "Exceeds desired slippage limit"),
        6006: ("ZeroTradingTokens", "Given pool token amount results in zero trading tokens"),
        6008: ("InvalidVault", "Invalid vault"),
        6012: ("InsufficientVault", "Insufficient vault"),
    },
    DLMM: {
        6003: ("ExceededAmountSlippageTolerance", "Exceeded amount slippage tolerance"),
        6012: ("PairInsufficientLiquidity", "Pair insufficient liquidity"),
        6039: ("InsufficientOutAmount", "Insufficient out amount"),
    },
}


class InstructionFailed(Exception):
    """An instruction's failure; `units` is what it consumed when that is more than its base
    cost (a swap that ran its math before refusing the output)."""

    def __init__(
        self, index: int, error: Any, logs: Sequence[str] = (), units: int | None = None
    ) -> None:
        super().__init__(f"instruction {index}: {error}")
        self.index = index
        self.error = error
        self.logs = list(logs)
        self.units = units

    @property
    def transaction_error(self) -> dict[str, Any]:
        return {"InstructionError": [self.index, self.error]}


def display_instruction_error(error: Any) -> str:
    if isinstance(error, dict) and "Custom" in error:
        return f"custom program error: {error['Custom']:#x}"
    return _INSTRUCTION_ERROR_TEXT.get(str(error), str(error))


_INSTRUCTION_ERROR_TEXT = {
    "InvalidInstructionData": "invalid instruction data",
    "InvalidAccountData": "invalid account data for instruction",
    "MissingRequiredSignature": "missing required signature for instruction",
    "InvalidSeeds": "Provided seeds do not result in a valid address",
    "IllegalOwner": "Provided owner is not allowed",
    "UninitializedAccount": "instruction requires an initialized account",
    "ComputationalBudgetExceeded": "Computational budget exceeded",
    "InsufficientFunds": "insufficient funds for instruction",
}


def display_transaction_error(err: Any) -> str:
    """TransactionError's Display text, for the -32002 message [SDK-TXE]."""
    if isinstance(err, dict) and "InstructionError" in err:
        index, inner = err["InstructionError"]
        return f"Error processing Instruction {index}: {display_instruction_error(inner)}"
    return {
        "BlockhashNotFound": "Blockhash not found",
        "AlreadyProcessed": "This transaction has already been processed",
        "InsufficientFundsForFee": "Insufficient funds for fee",
        "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
        "SignatureFailure": "Transaction did not pass signature verification",
    }.get(str(err), str(err))


def anchor_error(
    index: int,
    program: str,
    code: int,
    name: str | None = None,
    left: int | None = None,
    right: int | None = None,
    units: int | None = None,
) -> InstructionFailed:
    """An Anchor error with the program's log lines [ANC lang/src/error.rs]."""
    known = _ERROR_NAMES.get(program, {}).get(code)
    error_name, message = known or (name or f"Error{code}", name or "Anchor error")
    source = "swap_base_input.rs" if program == CPMM else "swap.rs"
    logs = [
        f"Program log: AnchorError thrown in programs/{source}. Error Code: {error_name}. "
        f"Error Number: {code}. Error Message: {message}."
    ]
    if left is not None:
        logs += [f"Program log: Left: {left}", f"Program log: Right: {right}"]
    return InstructionFailed(index, {"Custom": code}, logs, units)
