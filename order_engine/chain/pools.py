"""The pools as the engine sees them: found on the chain, read once per slot, quoted locally.

This is how an aggregator quotes: it discovers the venues' pool accounts with
`getProgramAccounts` (which is also how a new listing shows up), reads their state with one
`getMultipleAccounts` per slot per pair, decodes it into the exact CPMM / DLMM state of
`venues/math` (`cpmm_pool`, `dlmm_pool`), and runs the integer math itself. No database read
and no JSON parsing per quote: every order of the process that quotes a pair in the same slot
shares one read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from solders.pubkey import Pubkey

from order_engine.chain.client import Chain
from order_engine.chain.layouts.codec import AccountDecodeError
from order_engine.chain.layouts.meteora import BinArray, LbPair, bin_array_index, bitmap_indexes
from order_engine.chain.layouts.pdas import dlmm_bin_array_address
from order_engine.chain.layouts.raydium import AmmConfig, CpmmPoolState
from order_engine.chain.layouts.token import TokenAccount
from order_engine.chain.programs import METEORA_DLMM_PROGRAM, RAYDIUM_CPMM_PROGRAM
from order_engine.domain.errors import RpcUnavailable
from order_engine.venues.math.cpmm import ConstantProductPool
from order_engine.venues.math.dlmm import Bin, DlmmPool

_T = TypeVar("_T")

log = logging.getLogger(__name__)

RAYDIUM, METEORA = "raydium", "meteora"
CPMM_POOL_SIZE = 637  # [RAY] states/pool.rs (keys in chain.layouts; checked by a test)
LB_PAIR_SIZE = 904  # [MET] IDL v0.12.0
FAILED_DISCOVERY_BACKOFF_S = 1.0
# A DLMM swap passes the bin arrays it walks; the CLI passes 3 ([MET] cli swap_exact_in.rs).
MAX_BIN_ARRAYS_PER_SWAP = 3


@dataclass(frozen=True)
class PoolRef:
    """A pool found on the chain: its venue, address and the two mints (x = token 0)."""

    venue: str
    address: str
    mint_x: str
    mint_y: str

    def swaps(self, mint_in: str, mint_out: str) -> bool | None:
        """True if selling `mint_in` is an x→y swap, False if y→x, None if not this pair."""
        if (self.mint_x, self.mint_y) == (mint_in, mint_out):
            return True
        if (self.mint_y, self.mint_x) == (mint_in, mint_out):
            return False
        return None


@dataclass(frozen=True)
class PoolView:
    """One pool's state at one slot, decoded, with what a swap instruction needs."""

    ref: PoolRef
    slot_read_at: float  # the index's clock when read: the view is fresh for one slot
    slot: int  # the chain's slot the state was read at
    cpmm: ConstantProductPool | None = None
    cpmm_state: CpmmPoolState | None = None
    dlmm: DlmmPool | None = None
    lb_pair: LbPair | None = None
    bin_array_indexes: tuple[int, ...] = field(default=())
    bin_arrays: tuple[BinArray, ...] = field(default=(), repr=False)

    def bin_arrays_for_swap(self, swap_for_y: bool) -> tuple[int, ...]:
        """The bin arrays a swap walks, from the active bin's array in the swap's direction."""
        assert self.lb_pair is not None
        start = bin_array_index(self.lb_pair.active_id)
        if swap_for_y:  # X→Y: the price falls, the walk goes down
            walk = sorted((i for i in self.bin_array_indexes if i <= start), reverse=True)
        else:
            walk = sorted(i for i in self.bin_array_indexes if i >= start)
        return tuple(walk[:MAX_BIN_ARRAYS_PER_SWAP])


class PoolIndex:
    """Pool discovery and per-slot state for one process (shared by all its orders)."""

    def __init__(
        self,
        chain: Chain,
        *,
        slot_s: float = 0.4,
        rediscover_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chain = chain
        self.slot_s = slot_s
        self.rediscover_s = rediscover_s
        self.clock = clock
        self._refs: list[PoolRef] = []
        self._extra_keys: dict[str, tuple[str, ...]] = {}  # raydium: config + vaults
        self._discovered_at: float | None = None
        self._failed_at: float | None = None
        self._views: dict[str, PoolView] = {}
        self._decoded = _DecodedAccounts()
        self._lock = threading.Lock()
        self._read_locks: dict[frozenset[str], threading.Lock] = {}

    # -- discovery --------------------------------------------------------------------------

    def pools_for(self, mint_in: str, mint_out: str) -> list[PoolRef]:
        """Every pool trading this pair; a pair with none triggers an early re-discovery
        (a launch shows up within a second), else pools are re-discovered every few seconds."""
        self._discover_if_due(self.rediscover_s)
        found = [ref for ref in self._refs if ref.swaps(mint_in, mint_out) is not None]
        if not found:
            self._discover_if_due(1.0)
            found = [ref for ref in self._refs if ref.swaps(mint_in, mint_out) is not None]
        return found

    def all_pools(self, max_age_s: float | None = None) -> list[PoolRef]:
        """Every pool of both venues, re-discovered when older than `max_age_s` (the trigger
        engine asks each second, so a launch is seen within one)."""
        self._discover_if_due(self.rediscover_s if max_age_s is None else max_age_s)
        return list(self._refs)

    def listed_mints(self) -> set[str]:
        self._discover_if_due(self.rediscover_s)
        return {mint for ref in self._refs for mint in (ref.mint_x, ref.mint_y)}

    def _discover_if_due(self, max_age_s: float) -> None:
        if self._discovered_at is not None and self.clock() - self._discovered_at < max_age_s:
            return
        if (
            self._failed_at is not None
            and self.clock() - self._failed_at < FAILED_DISCOVERY_BACKOFF_S
        ):
            # The node was unreachable a moment ago: don't ask again on every request.
            raise RpcUnavailable("pool discovery failed moments ago; the RPC node is unreachable")
        with self._lock:
            if self._discovered_at is not None and self.clock() - self._discovered_at < max_age_s:
                return
            try:
                self._discover()
            except Exception:
                self._failed_at = self.clock()
                raise
            self._failed_at = None

    def _discover(self) -> None:
        """One `getProgramAccounts` per program: every pool, its venue and its mints."""
        refs: list[PoolRef] = []
        extra: dict[str, tuple[str, ...]] = {}
        decoded = self._decoded.decode  # the same bytes as this slot's pool read: decoded once
        for address, data in self.chain.program_accounts(str(RAYDIUM_CPMM_PROGRAM), CPMM_POOL_SIZE):
            state = decoded(address, data, CpmmPoolState.decode)
            refs.append(PoolRef(RAYDIUM, address, str(state.token_0_mint), str(state.token_1_mint)))
            extra[address] = (
                str(state.amm_config),
                str(state.token_0_vault),
                str(state.token_1_vault),
            )
        for address, data in self.chain.program_accounts(str(METEORA_DLMM_PROGRAM), LB_PAIR_SIZE):
            pair = decoded(address, data, LbPair.decode)
            refs.append(PoolRef(METEORA, address, str(pair.token_x_mint), str(pair.token_y_mint)))
        self._refs, self._extra_keys = refs, extra
        self._discovered_at = self.clock()

    # -- state ------------------------------------------------------------------------------

    def views(self, refs: Sequence[PoolRef]) -> list[PoolView]:
        """The pools' state, read at most once per slot for a set of pools (concurrent callers
        for the same pools wait for one read)."""
        stale = [ref for ref in refs if self._is_stale(ref.address)]
        if stale:
            key = frozenset(ref.address for ref in stale)
            with self._lock:
                read_lock = self._read_locks.setdefault(key, threading.Lock())
            with read_lock:
                still_stale = [ref for ref in stale if self._is_stale(ref.address)]
                if still_stale:
                    self._read(still_stale)
        return [self._views[ref.address] for ref in refs]

    def ref(self, address: str) -> PoolRef | None:
        """The pool discovered at `address` (None: not known to this process)."""
        return next((r for r in self._refs if r.address == address), None)

    def _is_stale(self, address: str) -> bool:
        view = self._views.get(address)
        return view is None or self.clock() - view.slot_read_at >= self.slot_s

    def _read(self, refs: Sequence[PoolRef]) -> None:
        keys: list[str] = []
        for ref in refs:
            keys.append(ref.address)
            if ref.venue == RAYDIUM:
                keys.extend(self._extra_keys[ref.address])
            else:
                keys.extend(self._known_arrays(ref))
        slot, values = self.chain.multiple_accounts(keys)
        data = dict(zip(keys, values, strict=True))
        read_at = self.clock()
        for ref in refs:
            if ref.venue == RAYDIUM:
                view = self._cpmm_view(ref, data, read_at, slot)
            else:
                view = self._dlmm_view(ref, data, read_at, slot)
            self._views[ref.address] = view

    def _cpmm_view(
        self, ref: PoolRef, data: dict[str, bytes | None], read_at: float, slot: int
    ) -> PoolView:
        config_key, vault_0, vault_1 = self._extra_keys[ref.address]
        decoded = self._decoded.decode
        state = decoded(ref.address, _required(data, ref.address), CpmmPoolState.decode)
        pool = cpmm_pool(
            state,
            decoded(config_key, _required(data, config_key), AmmConfig.decode),
            decoded(vault_0, _required(data, vault_0), TokenAccount.decode),
            decoded(vault_1, _required(data, vault_1), TokenAccount.decode),
        )
        return PoolView(ref, read_at, slot, cpmm=pool, cpmm_state=state)

    def _dlmm_view(
        self, ref: PoolRef, data: dict[str, bytes | None], read_at: float, slot: int
    ) -> PoolView:
        pair = self._decoded.decode(ref.address, _required(data, ref.address), LbPair.decode)
        indexes = tuple(bitmap_indexes(pair.bin_array_bitmap))
        arrays: dict[int, tuple[str, bytes]] = {}
        missing = []
        for index in indexes:
            key = str(dlmm_bin_array_address(Pubkey.from_string(ref.address), index))
            raw = data.get(key)
            if raw is None:
                missing.append((index, key))
            else:
                arrays[index] = (key, raw)
        if missing:
            # The active bin moved into arrays this process has not read yet: one more read.
            _, fetched = self.chain.multiple_accounts([key for _, key in missing])
            for (index, key), raw in zip(missing, fetched, strict=True):
                if raw is not None:
                    arrays[index] = (key, raw)
        decoded = tuple(
            self._decoded.decode(key, raw, BinArray.decode) for key, raw in arrays.values()
        )
        previous = self._views.get(ref.address)
        if (
            previous is not None
            and previous.dlmm is not None
            and previous.lb_pair is pair
            and previous.bin_arrays == decoded
        ):
            pool = previous.dlmm  # not one byte changed: the same pool
        else:
            pool = dlmm_pool(pair, list(decoded))
        return PoolView(
            ref,
            read_at,
            slot,
            dlmm=pool,
            lb_pair=pair,
            bin_array_indexes=indexes,
            bin_arrays=decoded,
        )

    def _known_arrays(self, ref: PoolRef) -> list[str]:
        view = self._views.get(ref.address)
        if view is None:
            return []
        address = Pubkey.from_string(ref.address)
        return [str(dlmm_bin_array_address(address, i)) for i in view.bin_array_indexes]


class _DecodedAccounts:
    """Decoded accounts by address, reused while their bytes stay the same. Most of a slot's
    accounts are unchanged from the last slot's (AMM configs always; the bin arrays a swap did
    not cross), and decoding them is most of a pool read's CPU. Decoders are pure and their
    results frozen, so sharing them is safe."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[bytes, Any]] = {}

    def decode(self, key: str, raw: bytes, decoder: Callable[[bytes], _T]) -> _T:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == raw:
            return cast(_T, entry[1])
        value = decoder(raw)
        self._entries[key] = (raw, value)
        return value


def _required(data: dict[str, bytes | None], key: str) -> bytes:
    raw = data.get(key)
    if raw is None:
        raise AccountDecodeError(f"account {key} does not exist")
    return raw


# --- decoded accounts -> pure math --------------------------------------------------------------


def cpmm_pool(
    state: CpmmPoolState, config: AmmConfig, vault_0: TokenAccount, vault_1: TokenAccount
) -> ConstantProductPool:
    """The constant-product pool the program's curve sees (x = token_0, y = token_1).

    Reserves are the vault balances minus the protocol, fund and creator fees accrued on that
    side (`vault_amount_without_fee` [RAY curve/calculator.rs]); the trade fee is
    `trade_fee_rate / 1e6`. Raises `ValueError` if a vault holds the wrong mint or less than
    the fees it owes.
    """
    if vault_0.mint != state.token_0_mint or vault_1.mint != state.token_1_mint:
        raise ValueError("the vaults do not hold the pool's mints in token_0, token_1 order")
    owed_0 = state.protocol_fees_token_0 + state.fund_fees_token_0 + state.creator_fees_token_0
    owed_1 = state.protocol_fees_token_1 + state.fund_fees_token_1 + state.creator_fees_token_1
    if vault_0.amount < owed_0 or vault_1.amount < owed_1:
        raise ValueError("a vault holds less than the fees it owes")
    return ConstantProductPool.raydium_cpmm(
        vault_0.amount - owed_0,
        vault_1.amount - owed_1,
        trade_fee_rate=config.trade_fee_rate,
        protocol_fee_rate=config.protocol_fee_rate,
        fund_fee_rate=config.fund_fee_rate,
    )


def dlmm_pool(pair: LbPair, arrays: Iterable[BinArray]) -> DlmmPool:
    """The DLMM pool the program sees: the pair's parameters, active bin and volatility state,
    and every non-empty bin of the given arrays. Raises `ValueError` on a duplicate array."""
    bins: dict[int, Bin] = {}
    seen: set[int] = set()
    for array in arrays:
        if array.index in seen:
            raise ValueError(f"bin array {array.index} given twice")
        seen.add(array.index)
        bins.update(array.non_empty_bins())
    return DlmmPool(pair.parameters, pair.active_id, bins, pair.volatility)
