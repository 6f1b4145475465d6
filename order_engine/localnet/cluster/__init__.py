"""The cluster: slots, blockhashes, pools, balances, pending transactions and the ledger.

`Cluster` is the localnet's core and has no HTTP or JSON in it (`node.Localnet` puts the
JSON-RPC methods on top). It is driven by an injectable clock (`now_ms()`): the server uses the
wall clock and a background greenlet; tests and replay tools use a `VirtualClock` and call
methods directly — all time-driven work happens lazily in `advance()`, which every entry point
calls first, so nothing depends on a background thread.

Time: slot = (now − GENESIS_MS) // slot_ms; block height == slot. The blockhash of slot s is
base58(sha256(f"{seed}:blockhash:{s}")), valid through block height s + validity − 1
(151 ⇒ +150, research/solana-rpc.md §2).

`advance()`: lands every accepted transaction whose landing instant has come (in landing order;
before each, the pools it touches are arbitraged to the market at that instant), arbitrages all
pools at each new slot, drops accepted transactions whose blockhash has expired, and writes what
changed to SQLite in one commit — before any caller can report a landing (durability rule).

Landing: execution is atomic per transaction (`execution.execute`); a failed transaction lands
with its `err` and pays its fee. A transaction not included by its blockhash's last valid block
height (a `drop` fault, a congestion/expiry roll, or a landing latency longer than the blockhash
lifetime) never lands.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import random
from collections import deque
from decimal import Decimal
from fractions import Fraction
from typing import Any

from solders.hash import Hash
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
    ATA_PROGRAM,
    COMPUTE_BUDGET_PROGRAM,
    DLMM_ORACLE_DISCRIMINATOR,
    MEMO_PROGRAM,
    METEORA_DLMM_PROGRAM,
    RAYDIUM_CPMM_PROGRAM,
    SYSTEM_PROGRAM,
    TOKEN_ACCOUNT_RENT,
    TOKEN_PROGRAM,
    WSOL_MINT,
    associated_token_address,
)
from order_engine.domain.tokens import TOKENS, Token
from order_engine.localnet import catalogue, execution, pools
from order_engine.localnet.catalogue import METEORA, RAYDIUM, PoolSpec
from order_engine.localnet.clock import GENESIS_MS, slot_at, slot_start_ms
from order_engine.localnet.cluster.accounts import (
    _MINT,
    BPF_UPGRADEABLE_LOADER,
    NATIVE_LOADER,
    Account,
    rent_exempt,
)
from order_engine.localnet.cluster.errors import RpcError, Stalled
from order_engine.localnet.cluster.faults import FAULT_KINDS, PRICE_JUMP_BPS, _roll
from order_engine.localnet.cluster.landing import Pending
from order_engine.localnet.cluster.ledger import FINALIZED_DEPTH, LedgerEntry
from order_engine.localnet.cluster.sending import _decode_sent, _memo_of
from order_engine.localnet.cluster.state import PoolRecord
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.execution import UserToken
from order_engine.localnet.market import Market
from order_engine.localnet.pool_accounts import cpmm_pool_accounts, dlmm_pool_accounts
from order_engine.localnet.store import Batch, Store

log = logging.getLogger(__name__)


class Cluster:
    """The simulated cluster. Single-threaded: call it from one thread (or greenlets)."""

    def __init__(self, settings: LocalnetSettings, clock: Any, store: Store) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store
        self.seed = settings.seed
        self.slot_ms = settings.slot_ms
        self.validity = settings.blockhash_validity_slots
        self.tokens: dict[str, Token] = {t.symbol: t for t in TOKENS}
        self.records: dict[str, PoolRecord] = {}
        self.wallets: dict[str, int] = {}
        self._funded: set[str] = set()  # wallets the faucet has seen (rebuilt lazily)
        self.token_accounts: dict[str, UserToken] = {}
        self.ledger: dict[str, LedgerEntry] = {}
        self.pending: dict[str, Pending] = {}
        self.faults: dict[str, deque[str]] = {}
        self.congestion: list[tuple[int, int, Decimal]] = []
        self._queue: list[tuple[int, int, str]] = []
        self._queue_seq = 0
        self._send_counts: dict[str, int] = {}
        self._by_address: dict[str, PoolRecord] = {}
        self._static: dict[str, Account] = {}
        self._hash_slots: dict[bytes, int] = {}
        self._hash_cache: dict[int, bytes] = {}
        self._ledger_seq = 0
        self._batch = Batch()
        self._dirty_records: dict[str, PoolRecord] = {}
        self._stale: set[str] = set()  # pools whose served accounts are out of date
        now_ms = clock.now_ms()
        self._tick_slot = self.slot_at(now_ms)
        self._load_or_genesis(now_ms)
        self._rebuild_static()
        self.flush()

    # -- time ------------------------------------------------------------------------------

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def slot_at(self, ms: int) -> int:
        return slot_at(ms, self.slot_ms)

    def slot_start_ms(self, slot: int) -> int:
        return slot_start_ms(slot, self.slot_ms)

    def current_slot(self) -> int:
        return self.slot_at(self.clock.now_ms())

    def blockhash_bytes(self, slot: int) -> bytes:
        digest = self._hash_cache.get(slot)
        if digest is None:
            digest = hashlib.sha256(f"{self.seed}:blockhash:{slot}".encode()).digest()
            if len(self._hash_cache) > 4 * self.validity + 64:
                low = slot - self.validity
                self._hash_cache = {s: h for s, h in self._hash_cache.items() if s >= low}
                self._hash_slots = {h: s for s, h in self._hash_cache.items()}
            self._hash_cache[slot] = digest
            self._hash_slots[digest] = slot
        return digest

    def blockhash(self, slot: int) -> str:
        return str(Hash(self.blockhash_bytes(slot)))

    def latest_blockhash(self) -> tuple[str, int, int]:
        """(blockhash, lastValidBlockHeight, slot) of the current slot."""
        slot = self.current_slot()
        return self.blockhash(slot), slot + self.validity - 1, slot

    def blockhash_slot(self, digest: bytes) -> int | None:
        """The slot whose blockhash this is, if it is still valid now; else None."""
        current = self.current_slot()
        # Make sure the whole validity window is known (cheap after the first call).
        for slot in range(current - self.validity + 1, current + 1):
            if slot not in self._hash_cache:
                self.blockhash_bytes(slot)
        found = self._hash_slots.get(digest)
        if found is None or not found <= current <= found + self.validity - 1:
            return None
        return found

    # -- the clock's work ------------------------------------------------------------------

    def advance(self) -> None:
        """Do everything due by now (see the module docstring), then persist it."""
        now_ms = self.clock.now_ms()
        current = self.slot_at(now_ms)
        if current > self._tick_slot:
            tick_ms = self.slot_start_ms(current)
            self._land_until(tick_ms - 1)
            self._tick(tick_ms)
            self._tick_slot = current
        self._land_until(now_ms)
        self.flush()

    def _tick(self, at_ms: int) -> None:
        for record in self.records.values():
            self._catch_up(record, at_ms)
        # Forget accepted transactions that can no longer land.
        current = self.slot_at(at_ms)
        expired = [s for s, p in self.pending.items() if p.last_valid < current]
        for signature in expired:
            del self.pending[signature]
            self._send_counts.pop(signature, None)
        if any(end < at_ms for _, end, _ in self.congestion):
            self.congestion = [c for c in self.congestion if c[1] >= at_ms]
            self._batch.meta["congestion"] = self._congestion_json()

    def _land_until(self, until_ms: int) -> None:
        queue = self._queue
        while queue and queue[0][0] <= until_ms:
            land_at_ms, _, signature = heapq.heappop(queue)
            pending = self.pending.get(signature)
            if pending is None or pending.land_at_ms != land_at_ms:
                continue
            if pending.fault in ("drop", "congestion"):
                continue  # stays in `pending` until it expires, unless re-broadcast (`_lost`)
            del self.pending[signature]
            self._send_counts.pop(signature, None)
            if self.slot_at(land_at_ms) > pending.last_valid:
                continue  # not included before its blockhash expired: never lands
            self._land(pending)

    def _catch_up(self, record: PoolRecord, at_ms: int) -> None:
        """Arbitrage the pool to the market's price at `at_ms` (never backwards in time)."""
        if at_ms <= record.market_at_ms:
            return
        record.market_at_ms = at_ms
        if record.drained:
            return
        target = record.spec.target_mid(self.market, at_ms)
        moved = pools.arbitrage(record.pool, target, at_ms // 1000)
        if moved is not record.pool:
            self._set_pool(record, moved)

    def _set_pool(self, record: PoolRecord, pool: pools.Pool) -> None:
        record.pool = pool
        record.served = None
        self._stale.add(record.pool_id)
        self._dirty_pool(record)

    def _dirty_pool(self, record: PoolRecord) -> None:
        # Serialised at flush time, once per batch, however often the pool changed.
        self._dirty_records[record.pool_id] = record

    def flush(self) -> None:
        """Write everything changed since the last flush in one committed transaction."""
        for record in self._dirty_records.values():
            self._batch.pools.append(
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
        if not self._batch:
            return
        batch, self._batch = self._batch, Batch()
        self.store.write(batch)

    # -- landing ---------------------------------------------------------------------------

    def _land(self, pending: Pending) -> None:
        land_ms = pending.land_at_ms
        tx = pending.tx
        payer = str(tx.message.account_keys[0])
        self.fund_wallet(payer)
        if pending.instructions is None:
            outcome = execution.Outcome(
                {"InstructionError": [pending.decode_error, "InvalidInstructionData"]},
                [],
                0,
                0,
                [],
                execution.Overlay(self),
            )
            fee, _ = execution.fee_for(len(tx.signatures), [])
            outcome.fee = fee
            outcome.overlay.lamports[payer] = self.wallet_lamports(payer) - fee
        else:
            touched = self._touched(pending.instructions)
            for record, _swap_for_y in touched:
                self._catch_up(record, land_ms)
            if pending.fault == "price_jump":
                for record, swap_for_y in touched:
                    self._adverse_move(record, swap_for_y, land_ms)
            outcome = self._execute(tx, pending.instructions, land_ms)
        if outcome.err == "InsufficientFundsForFee":
            return  # not included
        keys = [str(key) for key in tx.message.account_keys]
        before = self._balances(keys, payer)
        self._apply(outcome.overlay)
        after = self._balances(keys, payer)
        entry = LedgerEntry(
            signature=pending.signature,
            slot=self.slot_at(land_ms),
            err=outcome.err,
            fee=outcome.fee,
            memo=pending.memo,
            payer=payer,
            input_mint=outcome.input_mint,
            output_mint=outcome.output_mint,
            amount_in=outcome.amount_in,
            amount_out=outcome.amount_out if outcome.err is None else 0,
            legs=[leg.to_json() for leg in outcome.legs],
            landed_ms=land_ms,
            balances={"keys": keys, "pre": before, "post": after},
        )
        self.ledger[entry.signature] = entry
        self._ledger_seq += 1
        self._batch.ledger.append((entry.signature, self._ledger_seq, entry.to_json(), entry.memo))

    def _execute(
        self, tx: VersionedTransaction, instructions: list[Any], at_ms: int
    ) -> execution.Outcome:
        message = tx.message
        keys = message.account_keys
        signers = frozenset(str(k) for k in keys[: message.header.num_required_signatures])
        program_ids = [str(keys[ci.program_id_index]) for ci in message.instructions]
        return execution.execute(
            self,
            str(keys[0]),
            signers,
            len(tx.signatures),
            instructions,
            at_ms // 1000,
            program_ids,
        )

    def _touched(self, instructions: list[Any]) -> list[tuple[PoolRecord, bool]]:
        """(pool, sells x?) for every swap instruction whose pool the cluster knows."""
        touched = []
        for ix in instructions:
            name = type(ix).__name__
            if name == "CpmmSwapBaseInput":
                record = self._by_address.get(str(ix.pool_state))
                if record is not None and record.address == str(ix.pool_state):
                    touched.append((record, str(ix.input_vault) == record.expected["vault_x"]))
            elif name == "DlmmSwap":
                record = self._by_address.get(str(ix.lb_pair))
                if record is not None and record.address == str(ix.lb_pair):
                    account = self.token_account(str(ix.user_token_in))
                    sells_x = account is None or account.mint == record.mint_x
                    touched.append((record, sells_x))
        return touched

    def _adverse_move(self, record: PoolRecord, swap_for_y: bool, at_ms: int) -> None:
        """The `price_jump` fault: a large trade in the order's own direction just before."""
        mid = pools.mid_price(record.pool)
        if mid is None:
            return
        factor = Fraction(10_000 - PRICE_JUMP_BPS if swap_for_y else 10_000 + PRICE_JUMP_BPS)
        self._set_pool(record, pools.arbitrage(record.pool, mid * factor / 10_000, at_ms // 1000))

    def _apply(self, overlay: execution.Overlay) -> None:
        for address, lamports in overlay.lamports.items():
            self.wallets[address] = lamports
            self._batch.wallets[address] = lamports
        for address, account in overlay.tokens.items():
            if account is None:
                self.token_accounts.pop(address, None)
                self._batch.token_accounts[address] = None
            else:
                self.token_accounts[address] = account
                self._batch.token_accounts[address] = account.to_json()
        for pool_id, pool in overlay.pools.items():
            self._set_pool(self.records[pool_id], pool)

    def fund_wallet(self, owner: str) -> None:
        """The faucet: a wallet seen for the first time gets lamports and a token account of
        every listed mint, funded, before its first transaction runs."""
        if owner in self._funded:
            return
        self._funded.add(owner)
        if owner not in self.wallets:
            self.wallets[owner] = execution.FAUCET_LAMPORTS
            self._batch.wallets[owner] = execution.FAUCET_LAMPORTS
        for token in self.tokens_by_mint().values():
            if token.mint == str(WSOL_MINT):
                continue
            ata = str(
                associated_token_address(Pubkey.from_string(owner), Pubkey.from_string(token.mint))
            )
            if ata not in self.token_accounts:
                account = UserToken(
                    token.mint, owner, execution.FAUCET_TOKEN_ATOMS, TOKEN_ACCOUNT_RENT, False
                )
                self.token_accounts[ata] = account
                self._batch.token_accounts[ata] = account.to_json()

    def _balances(self, keys: list[str], payer: str) -> dict[str, Any]:
        """Lamports of each account key and the token accounts among them (Solana's
        `preBalances` / `preTokenBalances` shape), as `getTransaction` reports them."""
        lamports, tokens = [], []
        for index, key in enumerate(keys):
            account = self.token_accounts.get(key)
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
            else:
                default = execution.FAUCET_LAMPORTS if key == payer else 0
                lamports.append(self.wallets.get(key, default))
        return {"lamports": lamports, "tokens": tokens}

    def tokens_by_mint(self) -> dict[str, Token]:
        return {token.mint: token for token in (*TOKENS, *self.tokens.values())}

    # -- execution.State --------------------------------------------------------------------

    def wallet_lamports(self, address: str) -> int:
        return self.wallets.get(address, execution.FAUCET_LAMPORTS)

    def token_account(self, address: str) -> UserToken | None:
        return self.token_accounts.get(address)

    def pool_at(self, address: str) -> PoolRecord | None:
        return self._by_address.get(address)

    # -- sending ---------------------------------------------------------------------------

    def send(self, raw: bytes, skip_preflight: bool) -> str:
        """sendTransaction after decoding: returns the signature or raises RpcError."""
        self.advance()
        tx, instructions, decode_error = _decode_sent(raw)
        signature = str(tx.signatures[0])
        memo = _memo_of(instructions)
        if signature in self.ledger:
            if skip_preflight:
                return signature  # a real node accepts it and drops the duplicate
            raise self._preflight_error("AlreadyProcessed", [], 0)
        earlier = self.pending.get(signature)
        if earlier is not None and not self._lost(earlier):
            return signature  # on its way already: an idempotent re-broadcast
        # A first arrival, or a re-broadcast of one that never reached a leader: it rolls its
        # chances again (research/dex.md, drop model), and takes the next planned fault.
        fault = self._next_fault(memo)
        if fault == "stall":
            raise Stalled()
        if fault == "rpc_unavailable":
            raise RpcError(-32005, "Node is unhealthy", {"numSlotsBehind": None})
        count = self._send_counts.get(signature, 0)
        self._send_counts[signature] = count + 1
        rng = random.Random(f"{self.seed}:send:{signature}:{count}")
        if fault is None and _roll(rng, self.settings.transient_failure_rate):
            raise RpcError(-32005, "Node is unhealthy", {"numSlotsBehind": None})
        blockhash_slot = self.blockhash_slot(bytes(tx.message.recent_blockhash))
        if blockhash_slot is None:
            raise self._preflight_error("BlockhashNotFound", [], 0)
        if not skip_preflight:
            self._preflight(tx, instructions, decode_error)
        now_ms = self.clock.now_ms()
        land_at_ms = now_ms + self.settings.swap_latency.sample_ms(rng)
        landing_fault = fault if fault in ("drop", "price_jump") else None
        if landing_fault is None and _roll(rng, self.expiry_rate(now_ms)):
            landing_fault = "congestion"
        pending = Pending(
            signature,
            tx,
            instructions,
            decode_error,
            memo,
            blockhash_slot + self.validity - 1,
            land_at_ms,
            landing_fault,
        )
        self.pending[signature] = pending
        self._queue_seq += 1
        heapq.heappush(self._queue, (land_at_ms, self._queue_seq, signature))
        if fault == "lost_response":
            # Accepted, but the answer never reaches the sender (the double-spend trap).
            raise RpcError(-32005, "Node is unhealthy", {"numSlotsBehind": None}, 503)
        return signature

    def _lost(self, pending: Pending) -> bool:
        """Dropped (a `drop` fault or a congestion roll) and past the instant it would have
        landed: no leader has it, and only a re-broadcast can still bring it in."""
        return pending.fault in ("drop", "congestion") and self.clock.now_ms() >= pending.land_at_ms

    def _preflight(
        self, tx: VersionedTransaction, instructions: list[Any] | None, decode_error: Any
    ) -> None:
        """Simulate at the current state; raise -32002 with the simulation result on error."""
        if instructions is None:
            err = {"InstructionError": [decode_error, "InvalidInstructionData"]}
            raise self._preflight_error(err, [], 0)
        now_ms = self.clock.now_ms()
        for record, _ in self._touched(instructions):
            self._catch_up(record, now_ms)
        outcome = self._execute(tx, instructions, now_ms)
        if outcome.err is not None:
            raise self._preflight_error(outcome.err, outcome.logs, outcome.units)

    def _preflight_error(self, err: Any, logs: list[str], units: int) -> RpcError:
        return RpcError(
            -32002,
            f"Transaction simulation failed: {execution.display_transaction_error(err)}",
            {
                "err": err,
                "logs": logs,
                "accounts": None,
                "unitsConsumed": units,
                "loadedAccountsDataSize": 0,
                "returnData": None,
                "innerInstructions": None,
                "replacementBlockhash": None,
            },
        )

    def expiry_rate(self, at_ms: int) -> Decimal:
        rate = self.settings.expiry_rate
        for start, end, congested in self.congestion:
            if start <= at_ms <= end:
                rate = max(rate, congested)
        return rate

    def _next_fault(self, memo: str | None) -> str | None:
        if memo is None:
            return None
        queue = self.faults.get(memo)
        if not queue:
            return None
        fault = queue.popleft()
        if not queue:
            del self.faults[memo]
        return fault

    # -- statuses --------------------------------------------------------------------------

    def signature_status(self, signature: str, current: int) -> dict[str, Any] | None:
        entry = self.ledger.get(signature)
        if entry is None:
            return None
        depth = current - entry.slot
        if depth >= FINALIZED_DEPTH:
            confirmations, level = None, "finalized"
        else:
            confirmations = max(depth, 0)
            level = "confirmed" if depth >= 1 else "processed"
        err = entry.err
        return {
            "slot": entry.slot,
            "confirmations": confirmations,
            "err": err,
            "status": {"Ok": None} if err is None else {"Err": err},
            "confirmationStatus": level,
        }

    # -- accounts --------------------------------------------------------------------------

    def account(self, address: str) -> Account | None:
        """The account at `address` as served now."""
        if self._stale:
            self.refresh_accounts()
        record = self._by_address.get(address)
        if record is not None:
            served = record.served
            if served is None:
                served = self._serve(record)
            found = served.get(address)
            if found is not None:
                return found
        static = self._static.get(address)
        if static is not None:
            return static
        token = self.token_accounts.get(address)
        if token is not None:
            return Account(str(TOKEN_PROGRAM), token.lamports, token.encode())
        lamports = self.wallets.get(address)
        if lamports is not None:
            return Account(str(SYSTEM_PROGRAM), lamports, b"")
        return None

    def refresh_accounts(self) -> None:
        """Re-encode the accounts of every pool that changed since it was last served."""
        for pool_id in self._stale:
            record = self.records[pool_id]
            if record.served is None:
                self._serve(record)
        self._stale.clear()

    def program_accounts(self, program: str) -> list[tuple[str, Account]]:
        self.refresh_accounts()
        found = []
        for record in self.records.values():
            assert record.served is not None
            for address, account in record.served.items():
                if account.owner == program:
                    found.append((address, account))
        for address, account in self._static.items():
            if account.owner == program:
                found.append((address, account))
        if program == str(TOKEN_PROGRAM):
            for address, token in self.token_accounts.items():
                found.append((address, Account(program, token.lamports, token.encode())))
        # Shared accounts (an AmmConfig) appear once; sortResults defaults to true.
        unique = dict(found)
        return sorted(unique.items())

    def _serve(self, record: PoolRecord) -> dict[str, Account]:
        spec = record.spec
        mint_x, mint_y = Pubkey.from_string(record.mint_x), Pubkey.from_string(record.mint_y)
        built: dict[Pubkey, tuple[Pubkey, bytes]]
        if spec.venue == RAYDIUM:
            assert isinstance(record.pool, pools.ConstantProductPool)
            built = cpmm_pool_accounts(
                record.pool,
                spec.amm_config_index,
                mint_x,
                mint_y,
                spec.token_x.decimals,
                spec.token_y.decimals,
            ).accounts()
        else:
            assert isinstance(record.pool, pools.DlmmPool)
            built = dlmm_pool_accounts(
                record.pool, mint_x, mint_y, address=Pubkey.from_string(record.address)
            ).accounts()
        old = record.served or {}
        served: dict[str, Account] = {}
        for key, (owner, data) in built.items():
            address = str(key)
            previous = old.get(address)
            if previous is not None and previous.data == data:
                served[address] = previous  # unchanged: keep its encoded fragments
            else:
                served[address] = Account(str(owner), rent_exempt(len(data)), data)
        for address in old:
            if address not in served and self._by_address.get(address) is record:
                del self._by_address[address]
        for address in served:
            self._by_address[address] = record
        record.served = served
        return served

    def _address_pool(self, record: PoolRecord) -> None:
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
        self._by_address[record.address] = record

    def _rebuild_static(self) -> None:
        """Programs, mints, AMM configs' neighbours: accounts that do not follow the pools."""
        static: dict[str, Account] = {}
        for program in (RAYDIUM_CPMM_PROGRAM, METEORA_DLMM_PROGRAM, MEMO_PROGRAM):
            static[str(program)] = Account(BPF_UPGRADEABLE_LOADER, 1_141_440, bytes(36), True)
        for program in (SYSTEM_PROGRAM, COMPUTE_BUDGET_PROGRAM, TOKEN_PROGRAM, ATA_PROGRAM):
            static[str(program)] = Account(NATIVE_LOADER, 1, b"", True)
        for token in self.tokens.values():
            data = _MINT.pack(0, bytes(32), 0, token.decimals, True, 0, bytes(32))
            static[token.mint] = Account(str(TOKEN_PROGRAM), rent_exempt(len(data)), data)
        for record in self.records.values():
            if record.venue == METEORA:
                data = DLMM_ORACLE_DISCRIMINATOR + bytes(24)
                static[record.expected["oracle"]] = Account(
                    str(METEORA_DLMM_PROGRAM), rent_exempt(len(data)), data
                )
        self._static = static

    # -- state at start ----------------------------------------------------------------------

    def _load_or_genesis(self, now_ms: int) -> None:
        snapshot = self.store.load()
        meta = snapshot.meta
        for symbol, mint, decimals in meta.get("launched_tokens", []):
            self.tokens[symbol] = Token(symbol, mint, decimals)
        base_usd = dict(catalogue.REFERENCE_USD)
        base_usd.update({s: Decimal(v) for s, v in meta.get("launched_usd", {}).items()})
        overrides = {s: Decimal(v) for s, v in meta.get("overrides", {}).items()}
        self.market = Market(self.seed, base_usd, overrides)
        self.congestion = [(a, b, Decimal(r)) for a, b, r in meta.get("congestion", [])]
        if snapshot.pools:
            for seq, (_pool_id, spec, state, market_at_ms, drained) in enumerate(snapshot.pools):
                record = PoolRecord(
                    PoolSpec.from_json(spec), pools.from_json(state), market_at_ms, drained, seq
                )
                self._add_record(record)
        else:
            at_ms = max(now_ms, GENESIS_MS)
            for pool_spec, pair in catalogue.genesis():
                pool = catalogue.initial_state(pool_spec, pair, self.market, at_ms)
                record = PoolRecord(pool_spec, pool, at_ms, seq=len(self.records))
                self._add_record(record)
                self._dirty_pool(record)
            self._batch.meta["seed"] = self.seed
        for entry_json in snapshot.ledger:
            entry = LedgerEntry.from_json(entry_json)
            self.ledger[entry.signature] = entry
        self._ledger_seq = len(self.ledger)
        self.token_accounts = {
            a: UserToken.from_json(v) for a, v in snapshot.token_accounts.items()
        }
        self.wallets = dict(snapshot.wallets)

    def _add_record(self, record: PoolRecord) -> None:
        self._address_pool(record)
        self.records[record.pool_id] = record
        self._stale.add(record.pool_id)

    def _congestion_json(self) -> list[list[Any]]:
        return [[a, b, str(r)] for a, b, r in self.congestion]

    # -- admin -----------------------------------------------------------------------------

    def find_pool(self, name: str) -> PoolRecord:
        """A pool by id (`raydium:SOL-USDC`) or by any address it serves."""
        record = self.records.get(name) or self._by_address.get(name)
        if record is None:
            raise KeyError(f"no pool {name!r}")
        return record

    def resolve_token(self, name: str) -> Token:
        upper = "SOL" if name.upper() == "WSOL" else name.upper()
        token = self.tokens.get(upper)
        if token is None:
            token = next((t for t in self.tokens.values() if t.mint == name), None)
        if token is None:
            raise KeyError(f"unknown token {name!r}")
        return token

    def move(self, base: str, quote: str, price: Decimal) -> list[PoolRecord]:
        """Reference price of one `base` in `quote` becomes `price` now; pools follow at once."""
        self.advance()
        base_token, quote_token = self.resolve_token(base), self.resolve_token(quote)
        if base_token.symbol == quote_token.symbol:
            raise ValueError("base and quote are the same token")
        now_ms = self.clock.now_ms()
        self.market.set_price(base_token.symbol, quote_token.symbol, price, now_ms)
        self._batch.meta["overrides"] = {s: str(v) for s, v in self.market.overrides.items()}
        moved = []
        for record in self.records.values():
            symbols = {record.spec.token_x.symbol, record.spec.token_y.symbol}
            if base_token.symbol in symbols:
                record.market_at_ms = min(record.market_at_ms, now_ms - 1)
                self._catch_up(record, now_ms)
                moved.append(record)
        self.flush()
        return moved

    def launch(
        self,
        mint: str,
        symbol: str,
        decimals: int,
        quote: str,
        liquidity: Decimal,
        price: Decimal,
        venue: str,
    ) -> PoolRecord:
        """List a pool for a token no pool held before: `liquidity` whole quote tokens deep,
        `price` quote per one token."""
        self.advance()
        Pubkey.from_string(mint)  # raises ValueError on a malformed address
        symbol = symbol.upper()
        if venue not in (RAYDIUM, METEORA):
            raise ValueError(f"venue must be {RAYDIUM} or {METEORA}")
        if any(t.mint == mint for t in self.tokens.values()) or symbol in self.tokens:
            raise ValueError(f"{symbol} ({mint}) is already listed")
        if not 0 <= decimals <= 18 or liquidity <= 0 or price <= 0:
            raise ValueError("decimals must be 0..18, liquidity and price positive")
        quote_token = self.resolve_token(quote)
        token = Token(symbol, mint, decimals)
        now_ms = self.clock.now_ms()
        usd = price * self.market.reference_usd(quote_token.symbol, now_ms)
        spec = catalogue.launch_spec(venue, token, quote_token)
        mid = Fraction(price) * quote_token.one / token.one
        depth = int(Fraction(liquidity) * quote_token.one)
        state = catalogue.launched_state(spec, mid, depth)
        self.tokens[symbol] = token
        self.market.add_token(symbol, usd, now_ms)
        record = PoolRecord(spec, state, now_ms, seq=len(self.records))
        self._add_record(record)
        self._dirty_pool(record)
        self._rebuild_static()
        launched = [[t.symbol, t.mint, t.decimals] for t in self.tokens.values()]
        self._batch.meta["launched_tokens"] = [
            row for row in launched if row[0] not in {t.symbol for t in TOKENS}
        ]
        self._batch.meta["launched_usd"] = {
            s: str(v) for s, v in self.market.base_usd.items() if s not in catalogue.REFERENCE_USD
        }
        self._batch.meta["overrides"] = {s: str(v) for s, v in self.market.overrides.items()}
        self._serve(record)
        self.flush()
        return record

    def drain(self, name: str) -> PoolRecord:
        self.advance()
        record = self.find_pool(name)
        record.drained = True
        self._set_pool(record, pools.drained(record.pool))
        self.flush()
        return record

    def congest(self, expiry_rate: Decimal, seconds: int) -> tuple[int, int]:
        self.advance()
        now_ms = self.clock.now_ms()
        window = (now_ms, now_ms + seconds * 1000, expiry_rate)
        self.congestion.append(window)
        self._batch.meta["congestion"] = self._congestion_json()
        self.flush()
        return window[0], window[1]

    def plan_faults(self, memo: str, faults: list[str]) -> int:
        for fault in faults:
            if fault not in FAULT_KINDS:
                raise ValueError(f"unknown fault {fault!r}; kinds: {', '.join(FAULT_KINDS)}")
        queue = self.faults.setdefault(memo, deque())
        queue.extend(faults)
        return len(queue)

    def ledger_entries(
        self, memo: str | None = None, signature: str | None = None
    ) -> list[LedgerEntry]:
        self.advance()
        if signature is not None:
            entry = self.ledger.get(signature)
            entries = [] if entry is None else [entry]
        else:
            entries = list(self.ledger.values())
        if memo is not None:
            entries = [e for e in entries if e.memo == memo]
        return entries
