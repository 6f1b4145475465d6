"""What execution reads and writes: user token accounts, accounts the System program created
(`DataAccount`: nonce accounts), the cluster state it reads through (`State`, implemented by
the cluster's bank and by an `Overlay`, so a bundle's transactions run each over the last) and
the `Overlay` of pending writes over it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from solders.pubkey import Pubkey

from order_engine.chain.layouts.token import TokenAccount
from order_engine.chain.programs import TOKEN_ACCOUNT_RENT
from order_engine.localnet.pools import Pool


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


@dataclass(frozen=True)
class DataAccount:
    """An account the System program created, with its owner and data; its lamports are kept
    with the wallets' (`State.wallet_lamports`)."""

    owner: str
    data: bytes

    def to_json(self) -> dict[str, Any]:
        return {"owner": self.owner, "data": self.data.hex()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DataAccount:
        return cls(data["owner"], bytes.fromhex(data["data"]))


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

    def data_account(self, address: str) -> DataAccount | None: ...

    def pool_at(self, address: str) -> PoolRef | None: ...

    def pool_state(self, ref: PoolRef) -> Pool: ...


@dataclass
class Overlay:
    """Pending writes over a state; `None` token account = closed. An overlay is itself a
    `State`, so overlays stack (a bundle's transactions, each over the one before)."""

    base: State
    lamports: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, UserToken | None] = field(default_factory=dict)
    pools: dict[str, Pool] = field(default_factory=dict)
    accounts: dict[str, DataAccount] = field(default_factory=dict)

    def wallet(self, address: str) -> int:
        if address in self.lamports:
            return self.lamports[address]
        return self.base.wallet_lamports(address)

    def token(self, address: str) -> UserToken | None:
        if address in self.tokens:
            return self.tokens[address]
        return self.base.token_account(address)

    def pool(self, ref: PoolRef) -> Pool:
        found = self.pools.get(ref.pool_id)
        return found if found is not None else self.base.pool_state(ref)

    def copy(self) -> Overlay:
        return Overlay(
            self.base, dict(self.lamports), dict(self.tokens), dict(self.pools), dict(self.accounts)
        )

    def sets_lamports(self, address: str) -> bool:
        """Whether this overlay, or one it stacks on, wrote the address's lamports."""
        if address in self.lamports:
            return True
        return isinstance(self.base, Overlay) and self.base.sets_lamports(address)

    # -- State, for an overlay stacked on this one -------------------------------------------

    def wallet_lamports(self, address: str) -> int:
        return self.wallet(address)

    def token_account(self, address: str) -> UserToken | None:
        return self.token(address)

    def data_account(self, address: str) -> DataAccount | None:
        found = self.accounts.get(address)
        return found if found is not None else self.base.data_account(address)

    def pool_at(self, address: str) -> PoolRef | None:
        return self.base.pool_at(address)

    def pool_state(self, ref: PoolRef) -> Pool:
        return self.pool(ref)
