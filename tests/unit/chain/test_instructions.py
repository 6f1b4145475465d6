"""The localnet decoder refuses what it cannot execute, naming the instruction's index."""

from __future__ import annotations

import pytest
from solders.instruction import AccountMeta, Instruction
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from order_engine.chain import tx
from order_engine.chain.programs import (
    ATA_PROGRAM,
    COMPUTE_BUDGET_PROGRAM,
    CPMM_SWAP_BASE_INPUT_DISCRIMINATOR,
    CPMM_SWAP_BASE_OUTPUT_DISCRIMINATOR,
    DLMM_SWAP_DISCRIMINATOR,
    MEMO_PROGRAM,
    METEORA_DLMM_PROGRAM,
    RAYDIUM_CPMM_PROGRAM,
    SYSTEM_PROGRAM,
    TOKEN_PROGRAM,
    WSOL_MINT,
)
from order_engine.localnet.instructions import (
    ComputeUnitLimit,
    CreateAssociatedTokenAccount,
    InstructionDecodeError,
    Memo,
    SystemTransfer,
    TransactionDecodeError,
    decode_instructions,
    decode_transaction,
)
from tests.unit.chain.conftest import USDC_MINT


def signed(payer, blockhash, instructions: list[Instruction]) -> VersionedTransaction:
    message = MessageV0.try_compile(payer.pubkey(), instructions, [], blockhash)
    return decode_transaction(bytes(VersionedTransaction(message, [payer])))


def budget() -> list[Instruction]:
    return [tx.set_compute_unit_limit(200_000), tx.set_compute_unit_price(1)]


def metas(n: int) -> list[AccountMeta]:
    return [AccountMeta(Pubkey.new_unique(), False, True) for _ in range(n)]


def test_unknown_program_names_its_index(payer, blockhash):
    stranger = Instruction(Pubkey.new_unique(), b"\x01", [])
    transaction = signed(payer, blockhash, [*budget(), stranger])
    with pytest.raises(InstructionDecodeError, match="unknown program") as caught:
        decode_instructions(transaction)
    assert caught.value.index == 2
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("instruction", "reason"),
    [
        (
            Instruction(
                RAYDIUM_CPMM_PROGRAM, CPMM_SWAP_BASE_INPUT_DISCRIMINATOR + bytes(15), metas(13)
            ),
            "24 bytes",
        ),
        (
            Instruction(METEORA_DLMM_PROGRAM, DLMM_SWAP_DISCRIMINATOR + bytes(8), metas(16)),
            "24 bytes",
        ),
        (
            Instruction(
                RAYDIUM_CPMM_PROGRAM, CPMM_SWAP_BASE_OUTPUT_DISCRIMINATOR + bytes(16), metas(13)
            ),
            "unsupported",
        ),
        (
            Instruction(
                RAYDIUM_CPMM_PROGRAM, CPMM_SWAP_BASE_INPUT_DISCRIMINATOR + bytes(16), metas(12)
            ),
            "13 accounts",
        ),
        (
            Instruction(METEORA_DLMM_PROGRAM, DLMM_SWAP_DISCRIMINATOR + bytes(16), metas(14)),
            "15 accounts",
        ),
        (Instruction(SYSTEM_PROGRAM, b"\x02\x00\x00\x00" + bytes(7), metas(2)), "system"),
        (Instruction(SYSTEM_PROGRAM, b"\x02\x00\x00\x00" + bytes(8), metas(1)), "2 accounts"),
        (Instruction(TOKEN_PROGRAM, b"\x03" + bytes(8), metas(3)), "token"),
        (Instruction(TOKEN_PROGRAM, b"\x09", metas(2)), "3 accounts"),
        (Instruction(ATA_PROGRAM, b"\x02", metas(6)), "ATA"),
        (Instruction(MEMO_PROGRAM, b"\xff\xfe", []), "UTF-8"),
    ],
)
def test_malformed_instruction_names_its_index(payer, blockhash, instruction, reason):
    transaction = signed(payer, blockhash, [*budget(), instruction])
    with pytest.raises(InstructionDecodeError, match=reason) as caught:
        decode_instructions(transaction)
    assert caught.value.index == 2


@pytest.mark.parametrize("data", [b"\x02\x40\x0d\x03", b"\x03\x01", b"\x01\x00\x80\x00\x00", b""])
def test_truncated_or_unsupported_compute_budget_data(payer, blockhash, data):
    transaction = signed(payer, blockhash, [Instruction(COMPUTE_BUDGET_PROGRAM, data, [])])
    with pytest.raises(InstructionDecodeError, match="compute budget") as caught:
        decode_instructions(transaction)
    assert caught.value.index == 0


def test_garbage_and_truncated_transactions_are_refused(payer, blockhash):
    raw = bytes(signed(payer, blockhash, budget()))
    for bad in (b"", b"\x01" + bytes(10), raw[:-3]):
        with pytest.raises(TransactionDecodeError):
            decode_transaction(bad)


def test_legacy_message_and_plain_create_decode(payer, blockhash):
    owner = payer.pubkey()
    create = tx.create_associated_token_account_idempotent(owner, owner, USDC_MINT)
    plain_create = Instruction(ATA_PROGRAM, b"", create.accounts)
    instructions = [
        tx.set_compute_unit_limit(5),
        plain_create,
        tx.system_transfer(owner, Pubkey.new_unique(), 7),
        tx.memo_instruction("héllo"),
    ]
    message = Message.new_with_blockhash(instructions, owner, blockhash)
    legacy = VersionedTransaction(message, [payer])
    decoded = decode_instructions(decode_transaction(bytes(legacy)))
    assert decoded[0] == ComputeUnitLimit(5, index=0)
    assert isinstance(decoded[1], CreateAssociatedTokenAccount)
    assert not decoded[1].idempotent
    assert decoded[1].mint == USDC_MINT
    assert isinstance(decoded[2], SystemTransfer)
    assert decoded[2].lamports == 7
    assert decoded[3] == Memo("héllo", index=3)


def test_wsol_create_is_decoded_with_its_token_program(payer, blockhash):
    owner = payer.pubkey()
    create = tx.create_associated_token_account_idempotent(owner, owner, WSOL_MINT)
    (decoded,) = decode_instructions(signed(payer, blockhash, [create]))
    assert decoded.token_program == TOKEN_PROGRAM
    assert decoded.idempotent
