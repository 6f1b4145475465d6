"""The cluster: the localnet's core beneath the JSON-RPC node, with no HTTP or JSON in it.

It is driven by an injectable clock (`now_ms()`): the server uses the wall clock and a
background greenlet; tests and replay tools use a `VirtualClock` and call it directly. All
time-driven work happens lazily in `advance()`, which every entry point calls first, so nothing
depends on a background thread. Its parts, each in its own module:

* `bank`        -- the state: tokens, pools and the market they follow, wallets, token
  accounts; execution runs against it; its batch persists every change (`store.py`);
* `blockhashes` -- one seeded blockhash per slot, and how long each stays valid;
* `sent`        -- a sent transaction decoded, what waits to land, and whether it still may;
* `sending`     -- `sendTransaction` and the block engine's bundles: decode, verify, refuse or
  accept, preflight, schedule;
* `landing`     -- the slot loop: what lands in each slot, when and in what order;
* `congestion`, `demand`, `auction` -- the level in force, its background demand and the
  contested slots' auction for block space;
* `inclusion`   -- one transaction or bundle run and recorded;
* `simulation`  -- `simulateTransaction`: the same execution, against a copy;
* `fees`        -- what recent slots paid (`getRecentPrioritizationFees`, the tip floor);
* `bundles`     -- tip accounts, bundle ids and statuses; `searcher` -- the sandwich bot;
* `ledger`      -- every landed transaction, and its confirmation level;
* `accounts`    -- the accounts served to the read methods, encoded once per change;
* `faults`      -- faults planned per memo, and expiry-rate congestion windows;
* `admin`       -- move a price, launch a token's pool, drain a pool, congest.

Time: slot = (now − GENESIS_MS) // slot_ms; block height == slot (`clock.py`).
"""

from __future__ import annotations

from typing import Any

from order_engine.localnet.clock import slot_at, slot_start_ms
from order_engine.localnet.cluster.accounts import ServedAccounts
from order_engine.localnet.cluster.admin import Admin
from order_engine.localnet.cluster.bank import Bank
from order_engine.localnet.cluster.blockhashes import Blockhashes
from order_engine.localnet.cluster.bundles import BundleBook
from order_engine.localnet.cluster.congestion import Congestion
from order_engine.localnet.cluster.faults import Faults
from order_engine.localnet.cluster.fees import FeeHistory
from order_engine.localnet.cluster.inclusion import Inclusion
from order_engine.localnet.cluster.landing import Landing
from order_engine.localnet.cluster.ledger import Ledger
from order_engine.localnet.cluster.searcher import Searcher
from order_engine.localnet.cluster.sending import Sender
from order_engine.localnet.cluster.sent import Recency
from order_engine.localnet.cluster.simulation import Simulator
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.store import Store


class Cluster:
    """The simulated cluster, its parts wired together. Single-threaded: call it from one
    thread (or greenlets)."""

    def __init__(self, settings: LocalnetSettings, clock: Any, store: Store) -> None:
        self.clock = clock
        self.slot_ms = settings.slot_ms
        self.bank = Bank(settings, store)
        self.blockhashes = Blockhashes(settings.seed, settings.blockhash_validity_slots)
        self.ledger = Ledger(self.bank)
        self.faults = Faults(self.bank, settings.expiry_rate)
        self.fees = FeeHistory(self.bank)
        self.congestion = Congestion(
            self.bank, self.fees, settings.block_cu, settings.account_cu, settings.slot_ms
        )
        self.bundles = BundleBook(self.bank)
        self.searcher = Searcher(self.bank, settings.seed)
        recency = Recency(self.bank, self.blockhashes)
        self.landing = self._landing(recency, clock, settings.slot_ms)
        self.accounts = ServedAccounts(self.bank)
        self.simulator = Simulator(
            clock,
            settings.slot_ms,
            self.bank,
            self.ledger,
            self.blockhashes,
            recency,
            self.accounts,
        )
        self.admin = Admin(
            clock,
            self.bank,
            self.landing,
            self.accounts,
            self.faults,
            self.congestion,
            self.searcher,
        )
        self.sender = Sender(
            settings,
            clock,
            self.bank,
            self.ledger,
            self.landing,
            self.faults,
            self.blockhashes,
            recency,
            self.bundles,
        )
        self._load(store, clock.now_ms())

    def _landing(self, recency: Recency, clock: Any, slot_ms: int) -> Landing:
        inclusion = Inclusion(
            self.bank,
            self.ledger,
            self.blockhashes,
            recency,
            self.fees,
            self.bundles,
            self.searcher,
        )
        return Landing(
            self.bank,
            self.faults,
            self.congestion,
            self.fees,
            inclusion,
            self.bundles,
            recency,
            clock,
            slot_ms,
        )

    def _load(self, store: Store, now_ms: int) -> None:
        """The state a restart finds, or genesis."""
        snapshot = store.load()
        self.bank.load(snapshot, now_ms)
        self.faults.load(snapshot.meta)
        self.congestion.load(snapshot.meta)
        self.ledger.load(snapshot.ledger)
        self.fees.load(snapshot.fee_slots)
        self.bundles.load(snapshot.bundles)
        self.searcher.load(snapshot.meta, snapshot.sandwiches)
        self.accounts.rebuild_static()
        self.bank.flush()

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def slot_at(self, ms: int) -> int:
        return slot_at(ms, self.slot_ms)

    def slot_start_ms(self, slot: int) -> int:
        return slot_start_ms(slot, self.slot_ms)

    def current_slot(self) -> int:
        return self.slot_at(self.clock.now_ms())

    def advance(self) -> None:
        """Do everything due by now, then persist it (`landing.Landing.advance`)."""
        self.landing.advance()

    def send(self, raw: bytes, skip_preflight: bool) -> str:
        """sendTransaction at the present: the signature, or a `NodeError` as a node answers."""
        self.advance()
        return self.sender.send(raw, skip_preflight)

    def send_bundle(self, raws: list[bytes]) -> str:
        """The block engine's sendBundle at the present: the bundle id, or a `NodeError`."""
        self.advance()
        return self.sender.send_bundle(raws)

    def send_protected(self, raw: bytes) -> str:
        """The block engine's sendTransaction (a bundle of one): the signature."""
        self.advance()
        return self.sender.send_protected(raw)

    def simulate(
        self, raw: bytes, sig_verify: bool, replace: bool, addresses: list[str] | None
    ) -> tuple[dict[str, Any], list[Any] | None]:
        """simulateTransaction at the present (`simulation.Simulator`)."""
        self.advance()
        return self.simulator.simulate(raw, sig_verify, replace, addresses)

    def flush(self) -> None:
        self.bank.flush()
