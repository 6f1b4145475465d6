"""Swap transactions: built, serialized, parsed back, signature-verified, and every instruction
decoded by the localnet's decoder and checked (program, accounts with flags, data bytes)
against docs/localnet.md (Solana facts it follows)."""

from __future__ import annotations

import base64
import struct

import pytest
from solders.message import to_bytes_versioned
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from order_engine.chain import tx
from order_engine.chain.layouts.pdas import (
    amm_config_address,
    cpmm_authority,
    cpmm_observation_address,
    cpmm_pool_address,
    dlmm_bin_array_address,
    dlmm_oracle_address,
)
from order_engine.chain.layouts.raydium import CpmmPoolState
from order_engine.chain.programs import (
    CPMM_SWAP_BASE_INPUT_DISCRIMINATOR,
    DLMM_EVENT_AUTHORITY,
    DLMM_SWAP_DISCRIMINATOR,
    MAX_TRANSACTION_SIZE,
    METEORA_DLMM_PROGRAM,
    SYSTEM_PROGRAM,
    TOKEN_PROGRAM,
    WSOL_MINT,
    associated_token_address,
)
from order_engine.localnet.instructions import (
    AccountRef,
    CloseAccount,
    ComputeUnitLimit,
    ComputeUnitPrice,
    CpmmSwapBaseInput,
    CreateAssociatedTokenAccount,
    DlmmSwap,
    Memo,
    SyncNative,
    SystemTransfer,
    decode_instructions,
    decode_transaction,
)
from tests.unit.chain.conftest import USDC_MINT

CU_LIMIT = 200_000
CU_PRICE = 1_000
ORDER_MEMO = "order:6f1c2b9e-8a4d-4c3e-9b7a-2d5e8f1a3c4b"


def S(key: Pubkey) -> AccountRef:  # noqa: N802 - reads like the documented account tables' flags
    """Signer and writable (the fee payer)."""
    return AccountRef(key, True, True)


def W(key: Pubkey) -> AccountRef:  # noqa: N802
    return AccountRef(key, False, True)


def R(key: Pubkey) -> AccountRef:  # noqa: N802
    return AccountRef(key, False, False)


def u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def parse_back(built: VersionedTransaction) -> VersionedTransaction:
    """Wire round trip plus the checks every transaction must pass."""
    raw = bytes(built)
    assert len(raw) <= MAX_TRANSACTION_SIZE
    assert base64.b64decode(tx.encode_transaction(built)) == raw
    parsed = VersionedTransaction.from_bytes(raw)
    assert parsed == built
    assert decode_transaction(raw) == built
    assert parsed.verify_with_results() == [True]
    payer_key = parsed.message.account_keys[0]
    assert parsed.signatures[0].verify(payer_key, to_bytes_versioned(parsed.message))
    assert tx.signature_of(parsed) == str(parsed.signatures[0])
    assert raw[65] == 0x80  # v0 message prefix after one signature (docs/localnet.md)
    return parsed


def check_instructions(parsed: VersionedTransaction, expected: list[tuple[object, bytes, list]]):
    """Each decoded instruction equals `expected[i] = (instruction, data, accounts)`; its
    program id, raw data and accounts with the message's flags all match."""
    message = parsed.message
    decoded = decode_instructions(parsed)
    assert len(decoded) == len(expected) == len(message.instructions)
    for i, (ix, (want, data, refs)) in enumerate(zip(decoded, expected, strict=True)):
        compiled = message.instructions[i]
        assert ix == want, f"instruction {i}"
        assert ix.index == i
        assert message.account_keys[compiled.program_id_index] == type(want).program_id
        assert bytes(compiled.data) == data, f"instruction {i} data"
        assert list(ix.accounts) == refs, f"instruction {i} accounts"
        # Flags agree with solders' own reading of the header.
        for key_index, ref in zip(bytes(compiled.accounts), ix.accounts, strict=True):
            assert ref.is_signer == message.is_signer(key_index)
            assert ref.is_writable == message.is_maybe_writable(key_index)


def budget_instructions() -> list:
    return [
        # Research §5: 200 000 encodes as 02 40 0d 03 00, 1000 as 03 e8 03 00 00 00 00 00 00.
        (ComputeUnitLimit(CU_LIMIT, index=0), bytes.fromhex("02400d0300"), []),
        (ComputeUnitPrice(CU_PRICE, index=1), bytes.fromhex("03e803000000000000"), []),
    ]


def create_ata(index: int, owner: Pubkey, mint: Pubkey) -> tuple:
    account = associated_token_address(owner, mint)
    decoded = CreateAssociatedTokenAccount(owner, account, owner, mint, index=index)
    refs = [S(owner), W(account), S(owner), R(mint), R(SYSTEM_PROGRAM), R(TOKEN_PROGRAM)]
    return decoded, b"\x01", refs


def wrap(index: int, owner: Pubkey, lamports: int) -> list:
    wsol = associated_token_address(owner, WSOL_MINT)
    return [
        create_ata(index, owner, WSOL_MINT),
        # Research §6: bincode variant 2 as u32 LE, then u64 lamports.
        (
            SystemTransfer(owner, wsol, lamports, index=index + 1),
            b"\x02\x00\x00\x00" + u64(lamports),
            [S(owner), W(wsol)],
        ),
        (SyncNative(wsol, index=index + 2), b"\x11", [W(wsol)]),
    ]


def unwrap(index: int, owner: Pubkey) -> tuple:
    wsol = associated_token_address(owner, WSOL_MINT)
    return CloseAccount(wsol, owner, owner, index=index), b"\x09", [W(wsol), S(owner), S(owner)]


def raydium_swap(index: int, owner: Pubkey, cpmm, leg: tx.SwapLeg) -> tuple:
    state = cpmm.state
    selling_0 = leg.input_mint == state.token_0_mint
    in_vault, out_vault = (
        (state.token_0_vault, state.token_1_vault)
        if selling_0
        else (state.token_1_vault, state.token_0_vault)
    )
    user_in = associated_token_address(owner, leg.input_mint)
    user_out = associated_token_address(owner, leg.output_mint)
    decoded = CpmmSwapBaseInput(
        owner,
        cpmm_authority(),
        amm_config_address(0),
        cpmm.address,
        user_in,
        user_out,
        in_vault,
        out_vault,
        TOKEN_PROGRAM,
        TOKEN_PROGRAM,
        leg.input_mint,
        leg.output_mint,
        state.observation_key,
        leg.amount_in,
        leg.minimum_out,
        index=index,
    )
    refs = [
        S(owner),
        R(cpmm_authority()),
        R(amm_config_address(0)),
        W(cpmm.address),
        W(user_in),
        W(user_out),
        W(in_vault),
        W(out_vault),
        R(TOKEN_PROGRAM),
        R(TOKEN_PROGRAM),
        R(leg.input_mint),
        R(leg.output_mint),
        W(cpmm_observation_address(cpmm.address)),
    ]
    data = CPMM_SWAP_BASE_INPUT_DISCRIMINATOR + u64(leg.amount_in) + u64(leg.minimum_out)
    return decoded, data, refs


def meteora_swap(index: int, owner: Pubkey, dlmm, leg: tx.SwapLeg, arrays: list[int]) -> tuple:
    pair = dlmm.pair
    user_in = associated_token_address(owner, leg.input_mint)
    user_out = associated_token_address(owner, leg.output_mint)
    bin_arrays = tuple(dlmm_bin_array_address(dlmm.address, i) for i in arrays)
    program = METEORA_DLMM_PROGRAM
    decoded = DlmmSwap(
        dlmm.address,
        program,
        pair.reserve_x,
        pair.reserve_y,
        user_in,
        user_out,
        WSOL_MINT,
        USDC_MINT,
        dlmm_oracle_address(dlmm.address),
        program,
        owner,
        TOKEN_PROGRAM,
        TOKEN_PROGRAM,
        DLMM_EVENT_AUTHORITY,
        program,
        bin_arrays,
        leg.amount_in,
        leg.minimum_out,
        index=index,
    )
    refs = [
        W(dlmm.address),
        R(program),
        W(pair.reserve_x),
        W(pair.reserve_y),
        W(user_in),
        W(user_out),
        R(WSOL_MINT),
        R(USDC_MINT),
        W(pair.oracle),
        R(program),
        S(owner),
        R(TOKEN_PROGRAM),
        R(TOKEN_PROGRAM),
        R(DLMM_EVENT_AUTHORITY),
        R(program),
        *(W(key) for key in bin_arrays),
    ]
    data = DLMM_SWAP_DISCRIMINATOR + u64(leg.amount_in) + u64(leg.minimum_out)
    return decoded, data, refs


def test_sol_to_usdc_on_raydium(payer, blockhash, cpmm):
    owner = payer.pubkey()
    leg = tx.SwapLeg.raydium(cpmm.address, cpmm.state, WSOL_MINT, 2 * 10**9, 295_000_000)
    built = tx.build_swap_transaction(
        payer, blockhash, WSOL_MINT, USDC_MINT, 2 * 10**9, [leg], ORDER_MEMO, CU_LIMIT, CU_PRICE
    )
    parsed = parse_back(built)
    assert parsed.message.recent_blockhash == blockhash
    check_instructions(
        parsed,
        [
            *budget_instructions(),
            *wrap(2, owner, 2 * 10**9),
            create_ata(5, owner, USDC_MINT),
            raydium_swap(6, owner, cpmm, leg),
            unwrap(7, owner),
            (Memo(ORDER_MEMO, index=8), ORDER_MEMO.encode(), []),
        ],
    )


def test_usdc_to_sol_on_meteora(payer, blockhash, dlmm):
    owner = payer.pubkey()
    leg = tx.SwapLeg.meteora(dlmm.address, dlmm.pair, USDC_MINT, 1_500 * 10**6, 9_800_000_000)
    # Y -> X walks up from the active array (-28), over the arrays that exist.
    assert leg.bin_array_indexes == (-28, -27, -26)
    assert leg.output_mint == WSOL_MINT
    built = tx.build_swap_transaction(
        payer, blockhash, USDC_MINT, WSOL_MINT, 1_500 * 10**6, [leg], None, CU_LIMIT, CU_PRICE
    )
    parsed = parse_back(built)
    check_instructions(
        parsed,
        [
            *budget_instructions(),
            create_ata(2, owner, WSOL_MINT),
            meteora_swap(3, owner, dlmm, leg, [-28, -27, -26]),
            unwrap(4, owner),
        ],
    )


def test_two_leg_split_in_one_transaction(payer, blockhash, cpmm, dlmm):
    owner = payer.pubkey()
    raydium = tx.SwapLeg.raydium(cpmm.address, cpmm.state, WSOL_MINT, 6 * 10**9, 890_000_000)
    meteora = tx.SwapLeg.meteora(dlmm.address, dlmm.pair, WSOL_MINT, 4 * 10**9, 595_000_000)
    # X -> Y walks down from the active array; only -28 and -29 exist below it.
    assert meteora.bin_array_indexes == (-28, -29)
    built = tx.build_swap_transaction(
        payer,
        blockhash,
        WSOL_MINT,
        USDC_MINT,
        10 * 10**9,
        [raydium, meteora],
        ORDER_MEMO,
        CU_LIMIT,
        CU_PRICE,
    )
    parsed = parse_back(built)
    check_instructions(
        parsed,
        [
            *budget_instructions(),
            *wrap(2, owner, 10 * 10**9),
            create_ata(5, owner, USDC_MINT),
            raydium_swap(6, owner, cpmm, raydium),
            meteora_swap(7, owner, dlmm, meteora, [-28, -29]),
            unwrap(8, owner),
            (Memo(ORDER_MEMO, index=9), ORDER_MEMO.encode(), []),
        ],
    )


def test_usdc_to_sol_split_with_three_bin_arrays_fits_the_packet(payer, blockhash, cpmm, dlmm):
    raydium = tx.SwapLeg.raydium(cpmm.address, cpmm.state, USDC_MINT, 600 * 10**6, 1)
    meteora = tx.SwapLeg.meteora(dlmm.address, dlmm.pair, USDC_MINT, 400 * 10**6, 1)
    built = tx.build_swap_transaction(
        payer,
        blockhash,
        USDC_MINT,
        WSOL_MINT,
        10**9,
        [raydium, meteora],
        ORDER_MEMO,
        CU_LIMIT,
        CU_PRICE,
    )
    parsed = parse_back(built)
    kinds = [type(ix).__name__ for ix in decode_instructions(parsed)]
    assert kinds == [
        "ComputeUnitLimit",
        "ComputeUnitPrice",
        "CreateAssociatedTokenAccount",
        "CpmmSwapBaseInput",
        "DlmmSwap",
        "CloseAccount",
        "Memo",
    ]


def test_a_token_to_token_order_neither_wraps_nor_unwraps(payer, blockhash):
    jup = Pubkey.from_string("JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN")
    state = CpmmPoolState.create(amm_config_address(0), jup, USDC_MINT, 6, 6)
    pool = cpmm_pool_address(amm_config_address(0), jup, USDC_MINT)
    leg = tx.SwapLeg.raydium(pool, state, USDC_MINT, 10**6, 1)
    built = tx.build_swap_transaction(
        payer, blockhash, USDC_MINT, jup, 10**6, [leg], None, CU_LIMIT, CU_PRICE
    )
    decoded = decode_instructions(parse_back(built))
    assert [type(ix) for ix in decoded] == [
        ComputeUnitLimit,
        ComputeUnitPrice,
        CreateAssociatedTokenAccount,
        CpmmSwapBaseInput,
    ]
    assert decoded[3].input_vault == state.token_1_vault


def test_oversized_transaction_is_refused(payer, blockhash, cpmm):
    leg = tx.SwapLeg.raydium(cpmm.address, cpmm.state, WSOL_MINT, 10**9, 1)
    with pytest.raises(tx.TransactionTooLarge):
        tx.build_swap_transaction(
            payer, blockhash, WSOL_MINT, USDC_MINT, 10**9, [leg], "x" * 1_000, CU_LIMIT, CU_PRICE
        )


def test_legs_must_trade_the_orders_mints_and_amount(payer, blockhash, cpmm):
    leg = tx.SwapLeg.raydium(cpmm.address, cpmm.state, WSOL_MINT, 10**9, 1)
    with pytest.raises(ValueError, match="sum"):
        tx.build_swap_transaction(
            payer, blockhash, WSOL_MINT, USDC_MINT, 10**9 + 1, [leg], None, CU_LIMIT, CU_PRICE
        )
    with pytest.raises(ValueError, match="mints"):
        tx.build_swap_transaction(
            payer, blockhash, USDC_MINT, WSOL_MINT, 10**9, [leg], None, CU_LIMIT, CU_PRICE
        )
    with pytest.raises(ValueError, match="at least one"):
        tx.build_swap_transaction(
            payer, blockhash, WSOL_MINT, USDC_MINT, 0, [], None, CU_LIMIT, CU_PRICE
        )


def test_swap_leg_validation(cpmm, dlmm):
    other = Pubkey.new_unique()
    with pytest.raises(ValueError, match="mints"):
        tx.SwapLeg.raydium(cpmm.address, cpmm.state, other, 10, 1)
    with pytest.raises(ValueError, match="CpmmPoolState"):
        tx.SwapLeg("raydium", cpmm.address, 10, 1, WSOL_MINT, USDC_MINT)
    with pytest.raises(ValueError, match="LbPair"):
        tx.SwapLeg("meteora", dlmm.address, 10, 1, WSOL_MINT, USDC_MINT, cpmm_state=cpmm.state)
    with pytest.raises(ValueError, match="venue"):
        tx.SwapLeg("orca", cpmm.address, 10, 1, WSOL_MINT, USDC_MINT, cpmm_state=cpmm.state)
    with pytest.raises(ValueError, match="amount_in"):
        tx.SwapLeg.raydium(cpmm.address, cpmm.state, WSOL_MINT, 1.5, 1)  # type: ignore[arg-type]
    explicit = tx.SwapLeg.meteora(dlmm.address, dlmm.pair, WSOL_MINT, 10, 1, [-28])
    assert explicit.bin_array_indexes == (-28,)


def test_fees():
    assert tx.priority_fee_lamports(200_000, 1_000) == 200
    assert tx.priority_fee_lamports(200_001, 1) == 1  # rounded up
    assert tx.priority_fee_lamports(200_000, 0) == 0
    assert tx.transaction_fee_lamports(200_000, 1_000) == 5_200


@pytest.mark.parametrize("memo", [ORDER_MEMO, None])
def test_a_draft_with_its_budget_rewritten_is_the_transaction_built_with_that_budget(
    payer, blockhash, cpmm, memo
):
    """What the engine signs after simulating its unsigned draft: the same bytes, to the
    signature, as building the transaction with the final limit, price and tip."""
    leg = tx.SwapLeg.raydium(cpmm.address, cpmm.state, WSOL_MINT, 2 * 10**9, 1)
    tip_account = Pubkey.new_unique()

    def build(limit: int, price: int, tip: int, signed: bool) -> VersionedTransaction:
        return tx.build_swap_transaction(
            payer, blockhash, WSOL_MINT, USDC_MINT, 2 * 10**9, [leg], memo, limit, price,
            tip=(tip_account, tip), signed=signed,
        )  # fmt: skip

    draft = build(1_400_000, 0, 1_000, False)
    rewritten = tx.with_budget(draft, payer, 83_200, 27_500, 4_321)
    assert bytes(rewritten) == bytes(build(83_200, 27_500, 4_321, True))
