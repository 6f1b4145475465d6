"""Executing a decoded transaction against the cluster's state, all or nothing.

The localnet vendors no program binaries: each instruction the engine sends is emulated here
with the programs' documented behaviour (research/solana-rpc.md §5–§8) and the exact pool math:
compute budget (fees only), ATA CreateIdempotent, System Transfer, Token SyncNative and
CloseAccount, Raydium CPMM `swap_base_input` (6005 below the minimum) and Meteora DLMM `swap`
(6003 below the minimum), Memo.

Writes go to an `Overlay` over the cluster's state. The fee is charged first in its own layer;
if an instruction fails, only that layer is kept (a failed transaction still lands and still
pays its fee, as on Solana), otherwise the whole overlay is applied by the caller.

Token accounts start empty, as on Solana. Funds come from the localnet's faucet
(`Cluster.fund_wallet`): a wallet seen for the first time gets `FAUCET_LAMPORTS` and a token
account of every listed mint holding `FAUCET_TOKEN_ATOMS`, before its first transaction runs,
so funds never run out in normal use while every transfer is tracked and balanced (and a
transaction's balances show only what it moved).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from solders.pubkey import Pubkey

from order_engine.chain.layouts.token import TokenAccount
from order_engine.chain.programs import (
    LAMPORTS_PER_SIGNATURE,
    METEORA_DLMM_PROGRAM,
    MICRO_LAMPORTS_PER_LAMPORT,
    RAYDIUM_CPMM_PROGRAM,
    TOKEN_ACCOUNT_RENT,
    WSOL_MINT,
    associated_token_address,
)
from order_engine.localnet import pools
from order_engine.localnet.catalogue import RAYDIUM
from order_engine.localnet.pools import Pool

FAUCET_LAMPORTS = 10**18  # a billion SOL; fits a u64
FAUCET_TOKEN_ATOMS = 10**18
WSOL = str(WSOL_MINT)
CPMM = str(RAYDIUM_CPMM_PROGRAM)
DLMM = str(METEORA_DLMM_PROGRAM)

# Error codes. Anchor custom errors start at 6000 [ANC]; SPL Token and System program errors are
# their enum indexes (research/solana-rpc.md §3 table).
TOKEN_INSUFFICIENT_FUNDS = 1
TOKEN_MINT_MISMATCH = 3
TOKEN_OWNER_MISMATCH = 4
TOKEN_NON_NATIVE_HAS_BALANCE = 11
TOKEN_NON_NATIVE_NOT_SUPPORTED = 19
SYSTEM_ACCOUNT_ALREADY_IN_USE = 0
SYSTEM_RESULT_WITH_NEGATIVE_LAMPORTS = 1
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


@dataclass(frozen=True)
class UserToken:
    """A token account outside the pools: a wallet's ATA. Native (wSOL) accounts keep
    `lamports = rent + amount`; others hold `rent` lamports."""

    mint: str
    owner: str
    amount: int
    lamports: int
    native: bool

    def encode(self) -> bytes:
        return TokenAccount(
            Pubkey.from_string(self.mint),
            Pubkey.from_string(self.owner),
            self.amount,
            TOKEN_ACCOUNT_RENT if self.native else None,
        ).encode()

    def to_json(self) -> dict[str, Any]:
        return {
            "mint": self.mint,
            "owner": self.owner,
            "amount": str(self.amount),
            "lamports": str(self.lamports),
            "native": self.native,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserToken:
        return cls(
            data["mint"], data["owner"], int(data["amount"]), int(data["lamports"]), data["native"]
        )


class PoolRef(Protocol):
    """What execution needs of a served pool (the cluster's `PoolRecord`)."""

    pool: Pool
    expected: dict[str, str]  # role -> address: config, vault_x, vault_y, observation, ...

    @property
    def pool_id(self) -> str: ...

    @property
    def venue(self) -> str: ...

    @property
    def mint_x(self) -> str: ...

    @property
    def mint_y(self) -> str: ...


class State(Protocol):
    def wallet_lamports(self, address: str) -> int: ...

    def token_account(self, address: str) -> UserToken | None: ...

    def pool_at(self, address: str) -> PoolRef | None: ...


class InstructionFailed(Exception):
    def __init__(self, index: int, error: Any, logs: Sequence[str] = ()) -> None:
        super().__init__(f"instruction {index}: {error}")
        self.index = index
        self.error = error
        self.logs = list(logs)

    @property
    def transaction_error(self) -> dict[str, Any]:
        return {"InstructionError": [self.index, self.error]}


@dataclass
class Overlay:
    """Pending writes over the cluster's state; `None` token account = closed."""

    base: State
    lamports: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, UserToken | None] = field(default_factory=dict)
    pools: dict[str, Pool] = field(default_factory=dict)

    def wallet(self, address: str) -> int:
        if address in self.lamports:
            return self.lamports[address]
        return self.base.wallet_lamports(address)

    def token(self, address: str) -> UserToken | None:
        if address in self.tokens:
            return self.tokens[address]
        return self.base.token_account(address)

    def pool(self, ref: PoolRef) -> Pool:
        return self.pools.get(ref.pool_id, ref.pool)

    def copy(self) -> Overlay:
        return Overlay(self.base, dict(self.lamports), dict(self.tokens), dict(self.pools))


@dataclass(frozen=True)
class Leg:
    pool: str
    pool_id: str
    input_mint: str
    output_mint: str
    amount_in: int
    amount_out: int

    def to_json(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "poolId": self.pool_id,
            "inputMint": self.input_mint,
            "outputMint": self.output_mint,
            "amountIn": self.amount_in,
            "amountOut": self.amount_out,
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
    ceil(price × limit / 1e6) [research §5]."""
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
    runner = _Runner(fee_layer.copy(), payer, signers, now_s)
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
            logs.append(f"Program {program} failed: {_display_instruction_error(failure.error)}")
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


def _display_instruction_error(error: Any) -> str:
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
}


def display_transaction_error(err: Any) -> str:
    """TransactionError's Display text, for the -32002 message [SDK-TXE]."""
    if isinstance(err, dict) and "InstructionError" in err:
        index, inner = err["InstructionError"]
        return f"Error processing Instruction {index}: {_display_instruction_error(inner)}"
    return {
        "BlockhashNotFound": "Blockhash not found",
        "AlreadyProcessed": "This transaction has already been processed",
        "InsufficientFundsForFee": "Insufficient funds for fee",
        "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
        "SignatureFailure": "Transaction did not pass signature verification",
    }.get(str(err), str(err))


class _Runner:
    def __init__(self, overlay: Overlay, payer: str, signers: frozenset[str], now_s: int) -> None:
        self.overlay = overlay
        self.payer = payer
        self.signers = signers
        self.now_s = now_s
        self.legs: list[Leg] = []
        self.requested_in = 0
        self._first_in: str | None = None
        self._last_out: str | None = None
        self._handlers: dict[str, Callable[[int, Any, list[str]], None]] = {
            "ComputeUnitLimit": self._noop,
            "ComputeUnitPrice": self._noop,
            "Memo": self._noop,
            "CreateAssociatedTokenAccount": self._create_ata,
            "SystemTransfer": self._transfer,
            "SyncNative": self._sync_native,
            "CloseAccount": self._close,
            "CpmmSwapBaseInput": self._cpmm_swap,
            "DlmmSwap": self._dlmm_swap,
        }

    def mints(self) -> tuple[str | None, str | None]:
        return self._first_in, self._last_out

    def run(self, index: int, name: str, ix: Any, logs: list[str]) -> None:
        handler = self._handlers.get(name)
        if handler is None:
            raise InstructionFailed(index, "InvalidInstructionData")
        handler(index, ix, logs)

    # -- helpers ---------------------------------------------------------------------------

    def _noop(self, index: int, ix: Any, logs: list[str]) -> None:
        return None

    def _require_signer(self, index: int, address: str) -> None:
        if address not in self.signers:
            raise InstructionFailed(index, "MissingRequiredSignature")

    def _user_token(self, index: int, address: str, mint: str, owner: str) -> UserToken:
        """A user's token account; the owner's ATA is created empty when missing."""
        account = self.overlay.token(address)
        if account is None:
            expected = associated_token_address(Pubkey.from_string(owner), Pubkey.from_string(mint))
            if str(expected) != address:
                raise InstructionFailed(index, {"Custom": ANCHOR_NOT_INITIALIZED})
            account = _new_token_account(mint, owner)
            self.overlay.tokens[address] = account
        if account.mint != mint:
            raise InstructionFailed(index, {"Custom": TOKEN_MINT_MISMATCH})
        if account.owner != owner:
            raise InstructionFailed(index, {"Custom": TOKEN_OWNER_MISMATCH})
        return account

    def _move_tokens(self, address: str, account: UserToken, delta: int) -> None:
        lamports = account.lamports + delta if account.native else account.lamports
        self.overlay.tokens[address] = replace(
            account, amount=account.amount + delta, lamports=lamports
        )

    # -- native programs ---------------------------------------------------------------------

    def _create_ata(self, index: int, ix: Any, logs: list[str]) -> None:
        account, wallet, mint = str(ix.account), str(ix.wallet), str(ix.mint)
        if str(associated_token_address(ix.wallet, ix.mint)) != account:
            raise InstructionFailed(index, "InvalidSeeds")
        existing = self.overlay.token(account)
        if existing is not None:
            if not getattr(ix, "idempotent", True):
                raise InstructionFailed(index, {"Custom": SYSTEM_ACCOUNT_ALREADY_IN_USE})
            if existing.owner != wallet or existing.mint != mint:
                raise InstructionFailed(index, "IllegalOwner")
            return
        funder = str(ix.funder)
        self._require_signer(index, funder)
        lamports = self.overlay.wallet(funder)
        if lamports < TOKEN_ACCOUNT_RENT:
            raise InstructionFailed(index, {"Custom": SYSTEM_RESULT_WITH_NEGATIVE_LAMPORTS})
        self.overlay.lamports[funder] = lamports - TOKEN_ACCOUNT_RENT
        logs.append("Program log: Create")
        self.overlay.tokens[account] = _new_token_account(mint, wallet)

    def _transfer(self, index: int, ix: Any, logs: list[str]) -> None:
        source, destination, amount = str(ix.source), str(ix.destination), ix.lamports
        self._require_signer(index, source)
        balance = self.overlay.wallet(source)
        if balance < amount:
            logs.append(f"Transfer: insufficient lamports {balance}, need {amount}")
            raise InstructionFailed(index, {"Custom": SYSTEM_RESULT_WITH_NEGATIVE_LAMPORTS})
        self.overlay.lamports[source] = balance - amount
        token = self.overlay.token(destination)
        if token is not None:
            self.overlay.tokens[destination] = replace(token, lamports=token.lamports + amount)
        else:
            self.overlay.lamports[destination] = self.overlay.wallet(destination) + amount

    def _sync_native(self, index: int, ix: Any, logs: list[str]) -> None:
        address = str(ix.account)
        token = self.overlay.token(address)
        if token is None:
            raise InstructionFailed(index, "UninitializedAccount")
        if not token.native:
            raise InstructionFailed(index, {"Custom": TOKEN_NON_NATIVE_NOT_SUPPORTED})
        logs.append("Program log: Instruction: SyncNative")
        self.overlay.tokens[address] = replace(token, amount=token.lamports - TOKEN_ACCOUNT_RENT)

    def _close(self, index: int, ix: Any, logs: list[str]) -> None:
        address, destination, owner = str(ix.account), str(ix.destination), str(ix.owner)
        token = self.overlay.token(address)
        if token is None:
            raise InstructionFailed(index, "UninitializedAccount")
        if token.owner != owner:
            raise InstructionFailed(index, {"Custom": TOKEN_OWNER_MISMATCH})
        self._require_signer(index, owner)
        if not token.native and token.amount:
            raise InstructionFailed(index, {"Custom": TOKEN_NON_NATIVE_HAS_BALANCE})
        logs.append("Program log: Instruction: CloseAccount")
        self.overlay.tokens[address] = None
        target = self.overlay.token(destination)
        if target is not None:
            self.overlay.tokens[destination] = replace(
                target, lamports=target.lamports + token.lamports
            )
        else:
            self.overlay.lamports[destination] = self.overlay.wallet(destination) + token.lamports

    # -- swaps -----------------------------------------------------------------------------

    def _pool(self, index: int, address: str, venue: str) -> PoolRef:
        ref = self.overlay.base.pool_at(address)
        if ref is None or ref.expected.get("pool") != address:
            raise InstructionFailed(index, {"Custom": ANCHOR_NOT_INITIALIZED})
        if ref.venue != venue:
            raise InstructionFailed(index, {"Custom": ANCHOR_DISCRIMINATOR_MISMATCH})
        return ref

    def _cpmm_swap(self, index: int, ix: Any, logs: list[str]) -> None:
        logs.append("Program log: Instruction: SwapBaseInput")
        ref = self._pool(index, str(ix.pool_state), RAYDIUM)
        expected = ref.expected
        if str(ix.amm_config) != expected["config"]:
            raise _anchor(index, CPMM, ANCHOR_CONSTRAINT_HAS_ONE, "ConstraintHasOne")
        if str(ix.authority) != expected["authority"]:
            raise _anchor(index, CPMM, ANCHOR_CONSTRAINT_SEEDS, "ConstraintSeeds")
        if str(ix.observation_state) != expected["observation"]:
            raise _anchor(index, CPMM, ANCHOR_CONSTRAINT_ADDRESS, "ConstraintAddress")
        vaults = {expected["vault_x"]: ref.mint_x, expected["vault_y"]: ref.mint_y}
        input_vault, output_vault = str(ix.input_vault), str(ix.output_vault)
        if input_vault not in vaults or output_vault not in vaults or input_vault == output_vault:
            raise _anchor(index, CPMM, CPMM_INVALID_VAULT)
        input_mint, output_mint = str(ix.input_mint), str(ix.output_mint)
        if input_mint != vaults[input_vault] or output_mint != vaults[output_vault]:
            raise _anchor(index, CPMM, ANCHOR_CONSTRAINT_ADDRESS, "ConstraintAddress")
        swap_for_y = input_vault == expected["vault_x"]
        self._swap(
            index,
            ref,
            CPMM,
            swap_for_y,
            str(ix.input_token_account),
            str(ix.output_token_account),
            input_mint,
            output_mint,
            ix.amount_in,
            ix.minimum_amount_out,
            logs,
        )

    def _dlmm_swap(self, index: int, ix: Any, logs: list[str]) -> None:
        logs.append("Program log: Instruction: Swap")
        ref = self._pool(index, str(ix.lb_pair), "meteora")
        expected = ref.expected
        if (
            str(ix.reserve_x) != expected["vault_x"]
            or str(ix.reserve_y) != expected["vault_y"]
            or str(ix.oracle) != expected["oracle"]
        ):
            raise _anchor(index, DLMM, ANCHOR_CONSTRAINT_HAS_ONE, "ConstraintHasOne")
        if str(ix.token_x_mint) != ref.mint_x or str(ix.token_y_mint) != ref.mint_y:
            raise _anchor(index, DLMM, ANCHOR_CONSTRAINT_ADDRESS, "ConstraintAddress")
        user_in = self.overlay.token(str(ix.user_token_in))
        # The direction follows the user's input account, as in the program.
        input_mint = user_in.mint if user_in is not None else None
        if input_mint is None:
            input_mint = _ata_mint(str(ix.user), str(ix.user_token_in), ref.mint_x, ref.mint_y)
        if input_mint not in (ref.mint_x, ref.mint_y):
            raise InstructionFailed(index, {"Custom": TOKEN_MINT_MISMATCH})
        swap_for_y = input_mint == ref.mint_x
        output_mint = ref.mint_y if swap_for_y else ref.mint_x
        # Bin arrays are not checked against the walk: the pool's full state is used (lenient).
        self._swap(
            index,
            ref,
            DLMM,
            swap_for_y,
            str(ix.user_token_in),
            str(ix.user_token_out),
            input_mint,
            output_mint,
            ix.amount_in,
            ix.min_amount_out,
            logs,
        )

    def _swap(
        self,
        index: int,
        ref: PoolRef,
        program: str,
        swap_for_y: bool,
        user_in_address: str,
        user_out_address: str,
        input_mint: str,
        output_mint: str,
        amount_in: int,
        minimum_out: int,
        logs: list[str],
    ) -> None:
        self.requested_in += amount_in if self._first_in in (None, input_mint) else 0
        if self._first_in is None:
            self._first_in = input_mint
        self._last_out = output_mint
        user_in = self._user_token(index, user_in_address, input_mint, self.payer)
        user_out = self._user_token(index, user_out_address, output_mint, self.payer)
        if user_in.amount < amount_in:
            logs.append("Program log: Error: insufficient funds")
            raise InstructionFailed(index, {"Custom": TOKEN_INSUFFICIENT_FUNDS}, logs=[])
        pool = self.overlay.pool(ref)
        cpmm = program == CPMM
        try:
            result = pools.swap(pool, amount_in, swap_for_y, self.now_s)
        except pools.ZeroTradingTokens:
            raise _anchor(
                index, program, CPMM_ZERO_TRADING_TOKENS if cpmm else DLMM_INSUFFICIENT_OUT_AMOUNT
            ) from None
        except pools.InsufficientLiquidity:
            raise _anchor(
                index, program, CPMM_INSUFFICIENT_VAULT if cpmm else DLMM_NO_LIQUIDITY
            ) from None
        except pools.VenueMathError:
            raise _anchor(index, program, CPMM_INVALID_INPUT) from None
        if result.amount_out < minimum_out:
            code = CPMM_EXCEEDED_SLIPPAGE if cpmm else DLMM_EXCEEDED_SLIPPAGE
            raise _anchor(index, program, code, left=result.amount_out, right=minimum_out)
        self._move_tokens(user_in_address, user_in, -amount_in)
        # Re-read: the output account may be the input one in a degenerate transaction.
        user_out = self.overlay.token(user_out_address) or user_out
        self._move_tokens(user_out_address, user_out, result.amount_out)
        self.overlay.pools[ref.pool_id] = result.pool
        self.legs.append(
            Leg(
                ref.expected["pool"],
                ref.pool_id,
                input_mint,
                output_mint,
                amount_in,
                result.amount_out,
            )
        )


def _ata_mint(owner: str, address: str, mint_x: str, mint_y: str) -> str | None:
    for mint in (mint_x, mint_y):
        ata = associated_token_address(Pubkey.from_string(owner), Pubkey.from_string(mint))
        if str(ata) == address:
            return mint
    return None


def _new_token_account(mint: str, owner: str) -> UserToken:
    """A freshly created token account: empty (rent only), as the Token program makes it."""
    return UserToken(mint, owner, 0, TOKEN_ACCOUNT_RENT, mint == WSOL)


def _anchor(
    index: int,
    program: str,
    code: int,
    name: str | None = None,
    left: int | None = None,
    right: int | None = None,
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
    return InstructionFailed(index, {"Custom": code}, logs)
