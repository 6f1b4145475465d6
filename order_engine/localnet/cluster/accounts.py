"""Accounts as the cluster serves them to `getAccountInfo`, `getMultipleAccounts` and
`getProgramAccounts`: the pools' program accounts, programs and mints, token accounts, nonce
accounts, wallets.

A pool's accounts are encoded once per change of the pool (`Bank.set_pool` marks it stale) and
an unchanged account keeps its `Account` object, so the node's cached JSON fragments of it stay
valid: a 10 KB bin array is not re-encoded on every read.
"""

from __future__ import annotations

import dataclasses
import struct

from solders.pubkey import Pubkey

from order_engine.chain.programs import (
    ATA_PROGRAM,
    COMPUTE_BUDGET_PROGRAM,
    DLMM_ORACLE_DISCRIMINATOR,
    MEMO_PROGRAM,
    METEORA_DLMM_PROGRAM,
    RAYDIUM_CPMM_PROGRAM,
    SYSTEM_PROGRAM,
    TOKEN_PROGRAM,
)
from order_engine.localnet import pools
from order_engine.localnet.catalogue import METEORA, RAYDIUM
from order_engine.localnet.cluster.bank import Bank, PoolRecord
from order_engine.localnet.execution.state import Overlay
from order_engine.localnet.pool_accounts import cpmm_pool_accounts, dlmm_pool_accounts

RENT_LAMPORTS_PER_BYTE = 6_960  # 3480 lamports/byte-year × 2 years; 165-byte account = 2_039_280
ACCOUNT_STORAGE_OVERHEAD = 128
BPF_UPGRADEABLE_LOADER = "BPFLoaderUpgradeab1e11111111111111111111111"
NATIVE_LOADER = "NativeLoader1111111111111111111111111111111"
_MINT = struct.Struct("<I32sQB?I32s")  # SPL Mint, 82 bytes [SPL state.rs]


def rent_exempt(size: int) -> int:
    return (ACCOUNT_STORAGE_OVERHEAD + size) * RENT_LAMPORTS_PER_BYTE


class Account:
    """A served account; immutable once built. `cache` holds its encoded JSON fragments."""

    __slots__ = ("owner", "lamports", "data", "executable", "cache")

    def __init__(self, owner: str, lamports: int, data: bytes, executable: bool = False) -> None:
        self.owner = owner
        self.lamports = lamports
        self.data = data
        self.executable = executable
        self.cache: dict[str, str] = {}


class ServedAccounts:
    """Every account the cluster serves, read from the bank."""

    def __init__(self, bank: Bank) -> None:
        self._bank = bank
        self._static: dict[str, Account] = {}

    def get(self, address: str) -> Account | None:
        """The account at `address` as served now."""
        bank = self._bank
        if bank.stale:
            self.refresh()
        record = bank.by_address.get(address)
        if record is not None:
            served = record.served
            if served is None:
                served = self.serve(record)
            found = served.get(address)
            if found is not None:
                return found
        static = self._static.get(address)
        if static is not None:
            return static
        token = bank.token_accounts.get(address)
        if token is not None:
            return Account(str(TOKEN_PROGRAM), token.lamports, token.encode())
        created = bank.data_accounts.get(address)
        if created is not None:  # a nonce account, in the System program's layout
            return Account(created.owner, bank.wallets.get(address, 0), created.data)
        lamports = bank.wallets.get(address)
        if lamports is not None:
            return Account(str(SYSTEM_PROGRAM), lamports, b"")
        return None

    def after(self, address: str, overlay: Overlay) -> Account | None:
        """The account as it would be served once `overlay` (a simulation's writes) applied."""
        record = self._bank.by_address.get(address)
        if record is not None and record.pool_id in overlay.pools:
            moved = dataclasses.replace(record, pool=overlay.pools[record.pool_id], served=None)
            found = _pool_accounts(moved).get(Pubkey.from_string(address))
            if found is not None:
                owner, data = found
                return Account(str(owner), rent_exempt(len(data)), data)
        if address in overlay.tokens:
            token = overlay.tokens[address]
            if token is None:
                return None  # closed by the transaction
            return Account(str(TOKEN_PROGRAM), token.lamports, token.encode())
        created = overlay.accounts.get(address)
        if created is not None:
            return Account(created.owner, overlay.wallet(address), created.data)
        served = self.get(address)
        wallet = served is None or served.owner == str(SYSTEM_PROGRAM)
        if wallet and overlay.sets_lamports(address):
            data = b"" if served is None else served.data
            return Account(str(SYSTEM_PROGRAM), overlay.wallet(address), data)
        return served

    def refresh(self) -> None:
        """Re-encode the accounts of every pool that changed since it was last served."""
        for pool_id in self._bank.stale:
            record = self._bank.records[pool_id]
            if record.served is None:
                self.serve(record)
        self._bank.stale.clear()

    def of_program(self, program: str) -> list[tuple[str, Account]]:
        """`getProgramAccounts`: every account `program` owns, sorted by address."""
        self.refresh()
        found = []
        for record in self._bank.records.values():
            assert record.served is not None
            for address, account in record.served.items():
                if account.owner == program:
                    found.append((address, account))
        for address, account in self._static.items():
            if account.owner == program:
                found.append((address, account))
        if program == str(TOKEN_PROGRAM):
            for address, token in self._bank.token_accounts.items():
                found.append((address, Account(program, token.lamports, token.encode())))
        # Shared accounts (an AmmConfig) appear once; sortResults defaults to true.
        unique = dict(found)
        return sorted(unique.items())

    def serve(self, record: PoolRecord) -> dict[str, Account]:
        """Encode the pool's accounts and index every address they sit at."""
        by_address = self._bank.by_address
        old = record.served or {}
        served: dict[str, Account] = {}
        for key, (owner, data) in _pool_accounts(record).items():
            address = str(key)
            previous = old.get(address)
            if previous is not None and previous.data == data:
                served[address] = previous  # unchanged: keep its encoded fragments
            else:
                served[address] = Account(str(owner), rent_exempt(len(data)), data)
        for address in old:
            if address not in served and by_address.get(address) is record:
                del by_address[address]
        for address in served:
            by_address[address] = record
        record.served = served
        return served

    def rebuild_static(self) -> None:
        """Programs, mints, DLMM oracles: accounts that do not follow the pools' state."""
        static: dict[str, Account] = {}
        for program in (RAYDIUM_CPMM_PROGRAM, METEORA_DLMM_PROGRAM, MEMO_PROGRAM):
            static[str(program)] = Account(BPF_UPGRADEABLE_LOADER, 1_141_440, bytes(36), True)
        for program in (SYSTEM_PROGRAM, COMPUTE_BUDGET_PROGRAM, TOKEN_PROGRAM, ATA_PROGRAM):
            static[str(program)] = Account(NATIVE_LOADER, 1, b"", True)
        for token in self._bank.tokens.values():
            data = _MINT.pack(0, bytes(32), 0, token.decimals, True, 0, bytes(32))
            static[token.mint] = Account(str(TOKEN_PROGRAM), rent_exempt(len(data)), data)
        for record in self._bank.records.values():
            if record.venue == METEORA:
                data = DLMM_ORACLE_DISCRIMINATOR + bytes(24)
                static[record.expected["oracle"]] = Account(
                    str(METEORA_DLMM_PROGRAM), rent_exempt(len(data)), data
                )
        self._static = static


def _pool_accounts(record: PoolRecord) -> dict[Pubkey, tuple[Pubkey, bytes]]:
    """address -> (owner program, data) of every account the pool serves."""
    spec = record.spec
    mint_x, mint_y = Pubkey.from_string(record.mint_x), Pubkey.from_string(record.mint_y)
    if spec.venue == RAYDIUM:
        assert isinstance(record.pool, pools.ConstantProductPool)
        return cpmm_pool_accounts(
            record.pool,
            spec.amm_config_index,
            mint_x,
            mint_y,
            spec.token_x.decimals,
            spec.token_y.decimals,
        ).accounts()
    assert isinstance(record.pool, pools.DlmmPool)
    return dlmm_pool_accounts(
        record.pool, mint_x, mint_y, address=Pubkey.from_string(record.address)
    ).accounts()
