"""The bank: the state the cluster holds, changed only by landed transactions and admin actions.

Tokens (the listed ones and any launched), the pools and the seeded market they follow, wallets'
lamports, token accounts and the accounts the System program created (nonce accounts). The bank
is what execution runs against (`execution.State`); every change also goes into a write-behind
`Batch`, which `flush` writes to SQLite in one committed transaction before any answer can
report it (the durability rule, `store.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from order_engine.chain.layouts.pdas import (
    amm_config_address,
    cpmm_authority,
    cpmm_observation_address,
    cpmm_pool_address,
    cpmm_vault_address,
    dlmm_lb_pair_address,
    dlmm_oracle_address,
    dlmm_reserve_address,
)
from order_engine.chain.programs import (
    TOKEN_ACCOUNT_RENT,
    TOKEN_PROGRAM,
    WSOL_MINT,
    associated_token_address,
)
from order_engine.domain.tokens import TOKENS, Token
from order_engine.localnet import catalogue, execution, pools
from order_engine.localnet.catalogue import METEORA, RAYDIUM, PoolSpec
from order_engine.localnet.clock import GENESIS_MS
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.execution import metering
from order_engine.localnet.execution.state import DataAccount, Overlay, State, UserToken
from order_engine.localnet.market import Market
from order_engine.localnet.store import Batch, Snapshot, Store

if TYPE_CHECKING:
    from order_engine.localnet.cluster.accounts import Account


@dataclass
class PoolRecord:
    """One pool: spec, math state, where it is served, and its cached accounts."""

    spec: PoolSpec
    pool: pools.Pool
    market_at_ms: int
    drained: bool = False
    seq: int = 0
    address: str = ""
    expected: dict[str, str] = field(default_factory=dict)
    served: dict[str, Account] | None = None  # None: stale, rebuild before serving

    @property
    def pool_id(self) -> str:
        return self.spec.pool_id

    @property
    def venue(self) -> str:
        return self.spec.venue

    @property
    def mint_x(self) -> str:
        return self.spec.token_x.mint

    @property
    def mint_y(self) -> str:
        return self.spec.token_y.mint

    def mid_price(self) -> Decimal | None:
        """Whole Y per whole X at the pool's mid."""
        mid = pools.mid_price(self.pool)
        if mid is None or (self.drained and self.venue == METEORA):
            return None
        whole = mid * self.spec.token_x.one / self.spec.token_y.one
        return Decimal(whole.numerator) / Decimal(whole.denominator)


class Bank:
    """The cluster's state. Single-threaded, like the cluster."""

    market: Market

    def __init__(self, settings: LocalnetSettings, store: Store) -> None:
        self.seed = settings.seed
        self.store = store
        self.tokens: dict[str, Token] = {t.symbol: t for t in TOKENS}
        self.records: dict[str, PoolRecord] = {}
        self.wallets: dict[str, int] = {}
        self.token_accounts: dict[str, UserToken] = {}
        self.data_accounts: dict[str, DataAccount] = {}
        self.by_address: dict[str, PoolRecord] = {}  # every address a pool serves
        self.stale: set[str] = set()  # pools whose served accounts are out of date
        self.batch = Batch()
        self._funded: set[str] = set()  # wallets the faucet has seen (rebuilt lazily)
        self._dirty_records: dict[str, PoolRecord] = {}

    def load(self, snapshot: Snapshot, now_ms: int) -> None:
        """The state a restart finds in SQLite, or the genesis pools on an empty store."""
        meta = snapshot.meta
        for symbol, mint, decimals in meta.get("launched_tokens", []):
            self.tokens[symbol] = Token(symbol, mint, decimals)
        base_usd = dict(catalogue.REFERENCE_USD)
        base_usd.update({s: Decimal(v) for s, v in meta.get("launched_usd", {}).items()})
        overrides = {s: Decimal(v) for s, v in meta.get("overrides", {}).items()}
        self.market = Market(self.seed, base_usd, overrides)
        if snapshot.pools:
            for seq, (_pool_id, spec, state, market_at_ms, drained) in enumerate(snapshot.pools):
                record = PoolRecord(
                    PoolSpec.from_json(spec), pools.from_json(state), market_at_ms, drained, seq
                )
                self.add_record(record)
        else:
            at_ms = max(now_ms, GENESIS_MS)
            for pool_spec, pair in catalogue.genesis():
                pool = catalogue.initial_state(pool_spec, pair, self.market, at_ms)
                record = PoolRecord(pool_spec, pool, at_ms, seq=len(self.records))
                self.add_record(record)
                self.dirty_pool(record)
            self.batch.meta["seed"] = self.seed
        self.token_accounts = {
            a: UserToken.from_json(v) for a, v in snapshot.token_accounts.items()
        }
        self.wallets = dict(snapshot.wallets)
        self.data_accounts = {
            a: DataAccount.from_json(v) for a, v in snapshot.data_accounts.items()
        }

    def flush(self) -> None:
        """Write everything changed since the last flush in one committed transaction."""
        for record in self._dirty_records.values():
            self.batch.pools.append(
                (
                    record.pool_id,
                    record.seq,
                    record.spec.to_json(),
                    pools.to_json(record.pool),
                    record.market_at_ms,
                    record.drained,
                )
            )
        self._dirty_records.clear()
        if not self.batch:
            return
        batch, self.batch = self.batch, Batch()
        self.store.write(batch)

    # -- pools -----------------------------------------------------------------------------

    def add_record(self, record: PoolRecord) -> None:
        _address_pool(record)
        self.by_address[record.address] = record
        self.records[record.pool_id] = record
        self.stale.add(record.pool_id)

    def catch_up(self, record: PoolRecord, at_ms: int) -> None:
        """Arbitrage the pool to the market's price at `at_ms` (never backwards in time)."""
        if at_ms <= record.market_at_ms:
            return
        record.market_at_ms = at_ms
        if record.drained:
            return
        target = record.spec.target_mid(self.market, at_ms)
        moved = pools.arbitrage(record.pool, target, at_ms // 1000)
        if moved is not record.pool:
            self.set_pool(record, moved)

    def set_pool(self, record: PoolRecord, pool: pools.Pool) -> None:
        record.pool = pool
        record.served = None
        self.stale.add(record.pool_id)
        self.dirty_pool(record)

    def dirty_pool(self, record: PoolRecord) -> None:
        # Serialised at flush time, once per batch, however often the pool changed.
        self._dirty_records[record.pool_id] = record

    def touched(self, instructions: list[Any]) -> list[tuple[PoolRecord, bool]]:
        """(pool, sells x?) for every swap instruction whose pool the bank knows."""
        return [(record, sells_x) for record, sells_x, _ in self.swaps(instructions)]

    def swaps(self, instructions: list[Any]) -> list[tuple[PoolRecord, bool, Any]]:
        """(pool, sells x?, the instruction) for every swap whose pool the bank knows."""
        found = []
        for ix in instructions:
            name = type(ix).__name__
            if name == "CpmmSwapBaseInput":
                record = self.by_address.get(str(ix.pool_state))
                if record is not None and record.address == str(ix.pool_state):
                    found.append((record, str(ix.input_vault) == record.expected["vault_x"], ix))
            elif name == "DlmmSwap":
                record = self.by_address.get(str(ix.lb_pair))
                if record is not None and record.address == str(ix.lb_pair):
                    account = self.token_account(str(ix.user_token_in))
                    sells_x = account is None or account.mint == record.mint_x
                    found.append((record, sells_x, ix))
        return found

    # -- transactions ------------------------------------------------------------------------

    def execute(
        self,
        tx: VersionedTransaction,
        instructions: list[Any],
        at_ms: int,
        blockhash: bytes,
        state: State | None = None,
        budget: metering.Budget | None = None,
    ) -> execution.ExecutionResult:
        """Run a decoded transaction against the bank (or `state` over it), writing nothing
        (see `apply`); `blockhash` is the current one (what a durable nonce advances to)."""
        message = tx.message
        keys = message.account_keys
        signers = frozenset(str(k) for k in keys[: message.header.num_required_signatures])
        program_ids = [str(keys[ci.program_id_index]) for ci in message.instructions]
        return execution.execute(
            self if state is None else state,
            str(keys[0]),
            signers,
            len(tx.signatures),
            instructions,
            at_ms // 1000,
            program_ids,
            blockhash,
            budget,
        )

    def apply(self, overlay: Overlay) -> None:
        for address, lamports in overlay.lamports.items():
            self.wallets[address] = lamports
            self.batch.wallets[address] = lamports
        for address, account in overlay.tokens.items():
            if account is None:
                self.token_accounts.pop(address, None)
                self.batch.token_accounts[address] = None
            else:
                self.token_accounts[address] = account
                self.batch.token_accounts[address] = account.to_json()
        for pool_id, pool in overlay.pools.items():
            self.set_pool(self.records[pool_id], pool)
        for address, data_account in overlay.accounts.items():
            self.data_accounts[address] = data_account
            self.batch.data_accounts[address] = data_account.to_json()

    def fund_wallet(self, owner: str) -> None:
        """The faucet: a wallet seen for the first time gets lamports and a token account of
        every listed mint, funded, before its first transaction runs."""
        if owner in self._funded:
            return
        self._funded.add(owner)
        lamports, accounts = self._faucet(owner)
        if lamports is not None:
            self.wallets[owner] = lamports
            self.batch.wallets[owner] = lamports
        for ata, account in accounts.items():
            self.token_accounts[ata] = account
            self.batch.token_accounts[ata] = account.to_json()

    def faucet_view(self, owner: str) -> Overlay:
        """The bank as `owner` would find it once the faucet funded it, written nowhere: what a
        simulation of its first transaction runs against."""
        view = Overlay(self)
        if owner not in self._funded:
            lamports, accounts = self._faucet(owner)
            if lamports is not None:
                view.lamports[owner] = lamports
            view.tokens.update(accounts)
        return view

    def _faucet(self, owner: str) -> tuple[int | None, dict[str, UserToken]]:
        """What the faucet gives `owner` that it lacks: lamports, and its token accounts."""
        lamports = None if owner in self.wallets else execution.FAUCET_LAMPORTS
        accounts = {}
        wallet = Pubkey.from_string(owner)
        for token in self.tokens_by_mint().values():
            if token.mint == str(WSOL_MINT):
                continue
            ata = str(associated_token_address(wallet, Pubkey.from_string(token.mint)))
            if ata not in self.token_accounts:
                accounts[ata] = UserToken(
                    token.mint, owner, execution.FAUCET_TOKEN_ATOMS, TOKEN_ACCOUNT_RENT, False
                )
        return lamports, accounts

    def balances(self, keys: list[str], payer: str, state: Overlay | None = None) -> dict[str, Any]:
        """Lamports of each account key and the token accounts among them (Solana's
        `preBalances` / `preTokenBalances` shape), as `getTransaction` reports them; read from
        `state` (an overlay over the bank) when given."""
        lamports, tokens = [], []
        for index, key in enumerate(keys):
            account = self.token_accounts.get(key) if state is None else state.token_account(key)
            if account is not None:
                lamports.append(account.lamports)
                token = self.tokens_by_mint().get(account.mint)
                decimals = token.decimals if token is not None else 0
                tokens.append(
                    {
                        "accountIndex": index,
                        "mint": account.mint,
                        "owner": account.owner,
                        "programId": str(TOKEN_PROGRAM),
                        "uiTokenAmount": {
                            "amount": str(account.amount),
                            "decimals": decimals,
                            "uiAmount": None,
                            "uiAmountString": str(Decimal(account.amount).scaleb(-decimals)),
                        },
                    }
                )
            elif state is not None and (
                key in self.wallets or key == payer or state.sets_lamports(key)
            ):
                lamports.append(state.wallet_lamports(key))
            else:
                default = execution.FAUCET_LAMPORTS if key == payer else 0
                lamports.append(self.wallets.get(key, default))
        return {"lamports": lamports, "tokens": tokens}

    def tokens_by_mint(self) -> dict[str, Token]:
        return {token.mint: token for token in (*TOKENS, *self.tokens.values())}

    # -- execution.State ---------------------------------------------------------------------

    def wallet_lamports(self, address: str) -> int:
        return self.wallets.get(address, execution.FAUCET_LAMPORTS)

    def token_account(self, address: str) -> UserToken | None:
        return self.token_accounts.get(address)

    def data_account(self, address: str) -> DataAccount | None:
        return self.data_accounts.get(address)

    def pool_at(self, address: str) -> PoolRecord | None:
        return self.by_address.get(address)

    def pool_state(self, ref: Any) -> pools.Pool:
        return ref.pool


def _address_pool(record: PoolRecord) -> None:
    """Work out the pool's addresses (PDAs) once, for execution's account checks."""
    spec = record.spec
    mint_x, mint_y = Pubkey.from_string(record.mint_x), Pubkey.from_string(record.mint_y)
    if spec.venue == RAYDIUM:
        config = amm_config_address(spec.amm_config_index)
        address = cpmm_pool_address(config, mint_x, mint_y)
        record.expected = {
            "pool": str(address),
            "config": str(config),
            "authority": str(cpmm_authority()),
            "vault_x": str(cpmm_vault_address(address, mint_x)),
            "vault_y": str(cpmm_vault_address(address, mint_y)),
            "observation": str(cpmm_observation_address(address)),
        }
    else:
        address = dlmm_lb_pair_address(mint_x, mint_y, spec.bin_step)
        record.expected = {
            "pool": str(address),
            "vault_x": str(dlmm_reserve_address(address, mint_x)),
            "vault_y": str(dlmm_reserve_address(address, mint_y)),
            "oracle": str(dlmm_oracle_address(address)),
        }
    record.address = str(address)
