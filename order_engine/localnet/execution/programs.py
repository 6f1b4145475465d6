"""The emulated programs, one handler per decoded instruction: compute budget (fees only), ATA
create, the System program (`system`), Token SyncNative and CloseAccount, Raydium CPMM and
Meteora DLMM swaps (checked against the pool's canonical accounts), Memo. Each writes to the
overlay, returns the compute units it consumed (`metering`) and raises `InstructionFailed` as
the program would fail."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from solders.pubkey import Pubkey

from order_engine.chain.programs import TOKEN_ACCOUNT_RENT, WSOL_MINT, associated_token_address
from order_engine.localnet import pools
from order_engine.localnet.catalogue import RAYDIUM
from order_engine.localnet.execution.errors import (
    ANCHOR_CONSTRAINT_ADDRESS,
    ANCHOR_CONSTRAINT_HAS_ONE,
    ANCHOR_CONSTRAINT_SEEDS,
    ANCHOR_DISCRIMINATOR_MISMATCH,
    ANCHOR_NOT_INITIALIZED,
    CPMM,
    CPMM_EXCEEDED_SLIPPAGE,
    CPMM_INSUFFICIENT_VAULT,
    CPMM_INVALID_INPUT,
    CPMM_INVALID_VAULT,
    CPMM_ZERO_TRADING_TOKENS,
    DLMM,
    DLMM_EXCEEDED_SLIPPAGE,
    DLMM_INSUFFICIENT_OUT_AMOUNT,
    DLMM_NO_LIQUIDITY,
    SYSTEM_ACCOUNT_ALREADY_IN_USE,
    SYSTEM_RESULT_WITH_NEGATIVE_LAMPORTS,
    TOKEN_INSUFFICIENT_FUNDS,
    TOKEN_MINT_MISMATCH,
    TOKEN_NON_NATIVE_HAS_BALANCE,
    TOKEN_NON_NATIVE_NOT_SUPPORTED,
    TOKEN_OWNER_MISMATCH,
    InstructionFailed,
    anchor_error,
)
from order_engine.localnet.execution.metering import (
    ATA_CREATE_UNITS,
    ATA_EXISTING_UNITS,
    BUILTIN_UNITS,
    CLOSE_ACCOUNT_UNITS,
    SYNC_NATIVE_UNITS,
    cpmm_units,
    dlmm_units,
    memo_units,
)
from order_engine.localnet.execution.state import Overlay, PoolRef, UserToken
from order_engine.localnet.execution.system import SystemHandlers

WSOL = str(WSOL_MINT)


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


class Runner(SystemHandlers):
    """Runs one transaction's instructions in order over one overlay, collecting its legs.

    `blockhash` is the bank's blockhash where it runs (what a nonce advances to); `nonce` the
    nonce account a durable nonce transaction advances first."""

    def __init__(
        self,
        overlay: Overlay,
        payer: str,
        signers: frozenset[str],
        now_s: int,
        blockhash: bytes = b"",
        nonce: str | None = None,
    ) -> None:
        self.overlay = overlay
        self.payer = payer
        self.signers = signers
        self.now_s = now_s
        self.blockhash = blockhash
        self.nonce = nonce  # a durable nonce transaction's nonce account
        self.legs: list[Leg] = []
        self.requested_in = 0
        self._first_in: str | None = None
        self._last_out: str | None = None
        self._handlers: dict[str, Callable[[int, Any, list[str]], int]] = {
            "ComputeUnitLimit": self._compute_budget,
            "ComputeUnitPrice": self._compute_budget,
            "Memo": self._memo,
            "CreateAssociatedTokenAccount": self._create_ata,
            "SystemTransfer": self._transfer,
            "CreateAccount": self._create_account,
            "InitializeNonceAccount": self._initialize_nonce,
            "AdvanceNonceAccount": self._advance_nonce,
            "SyncNative": self._sync_native,
            "CloseAccount": self._close,
            "CpmmSwapBaseInput": self._cpmm_swap,
            "DlmmSwap": self._dlmm_swap,
        }

    def mints(self) -> tuple[str | None, str | None]:
        return self._first_in, self._last_out

    def run(self, index: int, name: str, ix: Any, logs: list[str]) -> int:
        """Run one instruction; the compute units it consumed."""
        handler = self._handlers.get(name)
        if handler is None:
            raise InstructionFailed(index, "InvalidInstructionData")
        return handler(index, ix, logs)

    # -- helpers ---------------------------------------------------------------------------

    def _compute_budget(self, index: int, ix: Any, logs: list[str]) -> int:
        return BUILTIN_UNITS  # read by `metering.budget` before the run

    def _memo(self, index: int, ix: Any, logs: list[str]) -> int:
        # spl-memo logs `Memo (len N): {:?}`; JSON's quoting matches Rust's Debug for text.
        text = ix.text
        length = len(text.encode("utf-8"))
        plain = text.isascii() and text.isprintable() and '"' not in text and "\\" not in text
        shown = f'"{text}"' if plain else json.dumps(text, ensure_ascii=False)
        logs.append(f"Program log: Memo (len {length}): {shown}")
        return memo_units(length)

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

    def _create_ata(self, index: int, ix: Any, logs: list[str]) -> int:
        account, wallet, mint = str(ix.account), str(ix.wallet), str(ix.mint)
        idempotent = getattr(ix, "idempotent", True)
        logs.append("Program log: CreateIdempotent" if idempotent else "Program log: Create")
        if str(associated_token_address(ix.wallet, ix.mint)) != account:
            raise InstructionFailed(index, "InvalidSeeds")
        existing = self.overlay.token(account)
        if existing is not None:
            if not idempotent:
                raise InstructionFailed(index, {"Custom": SYSTEM_ACCOUNT_ALREADY_IN_USE})
            if existing.owner != wallet or existing.mint != mint:
                raise InstructionFailed(index, "IllegalOwner")
            return ATA_EXISTING_UNITS
        funder = str(ix.funder)
        self._require_signer(index, funder)
        lamports = self.overlay.wallet(funder)
        if lamports < TOKEN_ACCOUNT_RENT:
            raise InstructionFailed(index, {"Custom": SYSTEM_RESULT_WITH_NEGATIVE_LAMPORTS})
        self.overlay.lamports[funder] = lamports - TOKEN_ACCOUNT_RENT
        self.overlay.tokens[account] = _new_token_account(mint, wallet)
        return ATA_CREATE_UNITS

    def _sync_native(self, index: int, ix: Any, logs: list[str]) -> int:
        address = str(ix.account)
        token = self.overlay.token(address)
        if token is None:
            raise InstructionFailed(index, "UninitializedAccount")
        if not token.native:
            raise InstructionFailed(index, {"Custom": TOKEN_NON_NATIVE_NOT_SUPPORTED})
        logs.append("Program log: Instruction: SyncNative")
        self.overlay.tokens[address] = replace(token, amount=token.lamports - TOKEN_ACCOUNT_RENT)
        return SYNC_NATIVE_UNITS

    def _close(self, index: int, ix: Any, logs: list[str]) -> int:
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
        return CLOSE_ACCOUNT_UNITS

    # -- swaps -----------------------------------------------------------------------------

    def _pool(self, index: int, address: str, venue: str) -> PoolRef:
        ref = self.overlay.base.pool_at(address)
        if ref is None or ref.expected.get("pool") != address:
            raise InstructionFailed(index, {"Custom": ANCHOR_NOT_INITIALIZED})
        if ref.venue != venue:
            raise InstructionFailed(index, {"Custom": ANCHOR_DISCRIMINATOR_MISMATCH})
        return ref

    def _cpmm_swap(self, index: int, ix: Any, logs: list[str]) -> int:
        logs.append("Program log: Instruction: SwapBaseInput")
        ref = self._pool(index, str(ix.pool_state), RAYDIUM)
        expected = ref.expected
        if str(ix.amm_config) != expected["config"]:
            raise anchor_error(index, CPMM, ANCHOR_CONSTRAINT_HAS_ONE, "ConstraintHasOne")
        if str(ix.authority) != expected["authority"]:
            raise anchor_error(index, CPMM, ANCHOR_CONSTRAINT_SEEDS, "ConstraintSeeds")
        if str(ix.observation_state) != expected["observation"]:
            raise anchor_error(index, CPMM, ANCHOR_CONSTRAINT_ADDRESS, "ConstraintAddress")
        vaults = {expected["vault_x"]: ref.mint_x, expected["vault_y"]: ref.mint_y}
        input_vault, output_vault = str(ix.input_vault), str(ix.output_vault)
        if input_vault not in vaults or output_vault not in vaults or input_vault == output_vault:
            raise anchor_error(index, CPMM, CPMM_INVALID_VAULT)
        input_mint, output_mint = str(ix.input_mint), str(ix.output_mint)
        if input_mint != vaults[input_vault] or output_mint != vaults[output_vault]:
            raise anchor_error(index, CPMM, ANCHOR_CONSTRAINT_ADDRESS, "ConstraintAddress")
        swap_for_y = input_vault == expected["vault_x"]
        return self._swap(
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

    def _dlmm_swap(self, index: int, ix: Any, logs: list[str]) -> int:
        logs.append("Program log: Instruction: Swap")
        ref = self._pool(index, str(ix.lb_pair), "meteora")
        expected = ref.expected
        if (
            str(ix.reserve_x) != expected["vault_x"]
            or str(ix.reserve_y) != expected["vault_y"]
            or str(ix.oracle) != expected["oracle"]
        ):
            raise anchor_error(index, DLMM, ANCHOR_CONSTRAINT_HAS_ONE, "ConstraintHasOne")
        if str(ix.token_x_mint) != ref.mint_x or str(ix.token_y_mint) != ref.mint_y:
            raise anchor_error(index, DLMM, ANCHOR_CONSTRAINT_ADDRESS, "ConstraintAddress")
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
        return self._swap(
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
    ) -> int:
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
            raise anchor_error(
                index, program, CPMM_ZERO_TRADING_TOKENS if cpmm else DLMM_INSUFFICIENT_OUT_AMOUNT
            ) from None
        except pools.InsufficientLiquidity:
            raise anchor_error(
                index, program, CPMM_INSUFFICIENT_VAULT if cpmm else DLMM_NO_LIQUIDITY
            ) from None
        except pools.VenueMathError:
            raise anchor_error(index, program, CPMM_INVALID_INPUT) from None
        units = _swap_units(cpmm, amount_in, pool, result.pool)
        if result.amount_out < minimum_out:
            code = CPMM_EXCEEDED_SLIPPAGE if cpmm else DLMM_EXCEEDED_SLIPPAGE
            raise anchor_error(
                index, program, code, left=result.amount_out, right=minimum_out, units=units
            )
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
        return units


def _swap_units(cpmm: bool, amount_in: int, before: pools.Pool, after: pools.Pool) -> int:
    if cpmm:
        return cpmm_units(amount_in)
    crossed = abs(getattr(after, "active_id", 0) - getattr(before, "active_id", 0))
    return dlmm_units(crossed)


def _ata_mint(owner: str, address: str, mint_x: str, mint_y: str) -> str | None:
    for mint in (mint_x, mint_y):
        ata = associated_token_address(Pubkey.from_string(owner), Pubkey.from_string(mint))
        if str(ata) == address:
            return mint
    return None


def _new_token_account(mint: str, owner: str) -> UserToken:
    """A freshly created token account: empty (rent only), as the Token program makes it."""
    return UserToken(mint, owner, 0, TOKEN_ACCOUNT_RENT, mint == WSOL)
